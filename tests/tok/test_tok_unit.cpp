// Unit tests of the tokenizer layer that need no data files: UTF-8 repair,
// NFC, the PCRE2 wrapper, BPE merge order, the tokenizer.json pipeline on a
// small hand-written file, and the errors for broken files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "sink/tok/bpe.hpp"
#include "sink/tok/regex.hpp"
#include "sink/tok/tokenizer.hpp"
#include "sink/tok/unicode.hpp"
#include "sink/util/error.hpp"

namespace fs = std::filesystem;
using namespace sink;
using namespace sink::tok;

TEST(Unicode, LossyMatchesPython) {
  // Expected values are Python's bytes.decode("utf-8", "replace").
  EXPECT_EQ(utf8_lossy("abc"), "abc");
  EXPECT_EQ(utf8_lossy("a\xff" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(utf8_lossy("\xe2\x28\xa1"), "\xEF\xBF\xBD(\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("\xf0\x90\x28"), "\xEF\xBF\xBD(");
  EXPECT_EQ(utf8_lossy("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8_lossy("\xc3"), "\xEF\xBF\xBD");
  EXPECT_TRUE(is_valid_utf8("h\xC3\xA9llo \xF0\x9F\x99\x82"));
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));  // overlong
}

// Vocabulary strings of tokenizer.model and GGUF files are raw bytes: a sequence
// cut short by the end is one U+FFFD, never a read past the end (found by
// fuzz/fuzz_tokenizer_model in the Strip decoder).
TEST(Unicode, NextCpStopsAtTheEnd) {
  for (std::string s : {"a\xF0", "a\xF0\x9F", "a\xF0\x9F\x98", "a\xE2\x96", "a\xC3"}) {
    std::size_t i = 1;
    EXPECT_EQ(next_cp(s, i), U'\uFFFD') << s.size();
    EXPECT_EQ(i, 2u);
  }
  std::string ok = "a\xF0\x9F\x98\x80";
  std::size_t i = 1;
  EXPECT_EQ(next_cp(ok, i), U'\U0001F600');
  EXPECT_EQ(i, 5u);
}

TEST(Unicode, Nfc) {
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");                      // e + acute -> é
  EXPECT_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");                   // Angstrom sign -> Å
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // Hangul L V T -> 각
  EXPECT_EQ(nfc("o\xCC\xA3\xCC\x82"), "\xE1\xBB\x99");           // o + dot below + circumflex -> ộ
  EXPECT_EQ(nfc("o\xCC\x82\xCC\xA3"), "\xE1\xBB\x99");           // reordered marks compose too
  EXPECT_EQ(nfc("\xEF\xAC\x81"), "\xEF\xAC\x81");               // ﬁ is NFKC-only
  EXPECT_EQ(nfd("\xC3\xA9"), "e\xCC\x81");
  EXPECT_TRUE(is_nfc_quick("plain ASCII \xE2\x80\x99 quote"));
}

TEST(Unicode, ByteMapRoundTrips) {
  for (int b = 0; b < 256; ++b) EXPECT_EQ(char_to_byte(byte_to_char(static_cast<std::uint8_t>(b))), b);
  EXPECT_EQ(byte_to_char(' '), 0x120u);  // 'Ġ'
}

TEST(Regex, WhiteSpaceIsOniguruma) {
  Regex re(R"(\s+)");
  std::size_t a, b;
  EXPECT_TRUE(re.match("x\xC2\x85y", 0, &a, &b));                 // U+0085 is White_Space
  EXPECT_FALSE(re.match("x\xE1\xA0\x8Ey", 0, &a, &b));             // U+180E is not (PCRE2's \s says yes)
  EXPECT_EQ(Regex::onig_compat(R"([^\s\p{L}])"),
            std::string("[^") + "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"
                                "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}" + "\\p{L}]");
  EXPECT_THROW(Regex("(unclosed"), std::invalid_argument);
}

TEST(Bpe, LowestRankFirstLeftmostOnTies) {
  BpeConfig c;
  c.vocab = {{"a", 0}, {"b", 1}, {"aa", 2}, {"ab", 3}, {"aab", 4}};
  c.merges = {{"a", "b"}, {"a", "a"}, {"a", "ab"}};
  Bpe bpe(std::move(c));
  std::vector<std::int32_t> ids;
  bpe.encode_word("aab", ids);  // (a,b) first -> a ab -> aab
  EXPECT_EQ(ids, (std::vector<std::int32_t>{4}));
  ids.clear();
  bpe.encode_word("aaa", ids);  // leftmost (a,a) first
  EXPECT_EQ(ids, (std::vector<std::int32_t>{2, 0}));
  ids.clear();
  std::string long_word(200, 'a');  // the heap path
  bpe.encode_word(long_word, ids);
  EXPECT_EQ(ids, std::vector<std::int32_t>(100, 2));
}

TEST(Bpe, ByteFallbackAndUnk) {
  BpeConfig c;
  c.vocab = {{"<unk>", 0}, {"<0xC3>", 1}, {"<0xA9>", 2}, {"x", 3}};
  c.byte_fallback = true;
  c.unk_token = "<unk>";
  c.fuse_unk = true;
  Bpe bpe(std::move(c));
  std::vector<std::int32_t> ids;
  bpe.encode_word("x\xC3\xA9x\xE2\x82\xAC\xE2\x82\xAC", ids);  // é has bytes; € has not -> one fused unk
  EXPECT_EQ(ids, (std::vector<std::int32_t>{3, 1, 2, 3, 0}));
  BpeConfig bad;
  bad.vocab = {{"a", 0}};
  bad.merges = {{"a", "b"}};
  EXPECT_THROW(Bpe{std::move(bad)}, std::invalid_argument);
}

namespace {
// A scratch folder for this process, removed at exit.
const fs::path& tmp_dir() {
  struct Dir {
    fs::path p = fs::temp_directory_path() / ("sink_tok_unit_" + std::to_string(::getpid()));
    Dir() { fs::create_directories(p); }
    ~Dir() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  };
  static const Dir d;
  return d.p;
}

fs::path write_tmp(const std::string& name, const std::string& content) {
  fs::path p = tmp_dir() / name;
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

constexpr const char* kTinyJson = R"({
  "added_tokens": [{"id": 5, "content": "<s>", "special": true, "normalized": false,
                    "lstrip": false, "rstrip": false, "single_word": false}],
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                 {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
  "pre_tokenizer": null,
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": false,
            "vocab": {"<unk>": 0, "▁": 1, "h": 2, "i": 3, "▁h": 4, "<s>": 5, "▁hi": 6},
            "merges": ["▁ h", "▁h i"]},
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [5], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
              {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
})";
}  // namespace

TEST(TokenizerJson, SpmStylePipeline) {
  auto tok = load_tokenizer(write_tmp("tokenizer.json", kTinyJson).string());
  EXPECT_EQ(tok->encode("hi hi"), (std::vector<std::int32_t>{5, 6, 6}));
  EXPECT_EQ(tok->encode("hi<s>hi", false), (std::vector<std::int32_t>{6, 5, 6}));  // each piece gets "▁"
  EXPECT_EQ(tok->encode("hx"), (std::vector<std::int32_t>{5, 4, 0}));
  EXPECT_EQ(tok->encode(""), (std::vector<std::int32_t>{5}));
  EXPECT_EQ(tok->bos_id(), 5);
  EXPECT_TRUE(tok->adds_bos());
  std::vector<std::int32_t> ids{5, 6, 6};
  EXPECT_EQ(tok->decode(ids), "<s> hi hi");
  EXPECT_EQ(tok->decode(ids, true), "hi hi");
  EXPECT_EQ(tok->vocab_size(), 7);
}

TEST(TokenizerJson, BrokenFilesAreInputErrors) {
  auto expect_error = [](const std::string& content, const std::string& needle) {
    fs::path p = write_tmp("broken.json", content);
    try {
      load_tokenizer(p.string());
      ADD_FAILURE() << "no error for " << content;
    } catch (const InputError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_error("{oops", "not valid JSON");
  expect_error(R"({"model": {"type": "Unigram", "vocab": []}})", "unsupported model type 'Unigram'");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", "model.merges is missing");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}})", "not two tokens");
  expect_error(R"({"normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", "vocab": {}, "merges": []}})",
               "unsupported normalizer 'Lowercase'");
  // Found by fuzz/fuzz_tokenizer_json and review (docs/reliability.md): ids sizing a
  // table (2^31 - 1 asked for 64 GB), ids that get<int32_t> wrapped, a number that
  // overflows a double, a Metaspace split on "" that never advanced.
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 2147483647}, "merges": []}})",
               "model.vocab: id of 'a' 2147483647 is outside [0, 16777215]");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 4294967301}, "merges": []}})", "is outside [0, ");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})", "is outside [0, ");
  expect_error(R"({"added_tokens": [{"id": 16777216, "content": "<x>"}],
                   "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "added_tokens id of '<x>'");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 1e999}, "merges": []}})", "not valid JSON");
  expect_error(R"({"pre_tokenizer": {"type": "Metaspace", "replacement": ""},
                   "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "Metaspace: empty replacement");
  EXPECT_THROW(load_tokenizer("/nonexistent/tokenizer.json"), InputError);
  EXPECT_THROW(load_tokenizer(write_tmp("tokenizer.model", "\x0a\x05\x0a\x01").string()), InputError);
}
