// The JSON Lines reader (each error names FILE:LINE), UTF-8 checking and
// SHA-256 against FIPS 180-4 vectors and Python's hashlib.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "sink/config/eval_set.hpp"
#include "sink/util/error.hpp"

namespace fs = std::filesystem;
using namespace sink;

namespace {

class EvalSet : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sink_test_eval_set_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& bytes) {
    auto p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }

  // The message of the InputError that reading `bytes` throws.
  std::string error_of(const std::string& bytes, const std::string& field = "text") {
    auto p = write("x.jsonl", bytes);
    try {
      read_eval_jsonl(p, field);
    } catch (const InputError& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.rfind(p, 0), 0u) << msg;  // names the file first
      return msg.substr(p.size());
    }
    ADD_FAILURE() << "no error for: " << bytes;
    return "";
  }

  fs::path dir_;
};

TEST_F(EvalSet, ReadsDocuments) {
  auto p = write("ok.jsonl",
                 "{\"id\": \"a\", \"text\": \"Hello\"}\n"
                 "\n"
                 "   \r\n"
                 "{\"id\": 7, \"text\": \"caf\\u00e9 \xE2\x82\xAC\"}\r\n"
                 "{\"text\": \"no id\", \"year\": 1999}\n"
                 "{\"id\": 2.5, \"text\": \"x\"}");  // no final newline
  auto docs = read_eval_jsonl(p);
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_EQ(docs[0].id, "a");
  EXPECT_EQ(docs[0].text, "Hello");
  EXPECT_EQ(docs[1].id, "7");
  EXPECT_EQ(docs[1].text, "caf\xC3\xA9 \xE2\x82\xAC");
  EXPECT_EQ(docs[2].id, "5");  // the line number
  EXPECT_EQ(docs[3].id, "2.5");
  EXPECT_EQ(read_eval_jsonl(p, "text", 2).size(), 2u);
}

TEST_F(EvalSet, OtherField) {
  auto p = write("f.jsonl", "{\"id\": 1, \"body\": \"b\", \"text\": 3}\n");
  EXPECT_EQ(read_eval_jsonl(p, "body").at(0).text, "b");
}

TEST_F(EvalSet, MaxDocsStopsBeforeLaterErrors) {
  auto p = write("m.jsonl", "{\"text\": \"a\"}\n{broken\n");
  EXPECT_EQ(read_eval_jsonl(p, "text", 1).size(), 1u);
  EXPECT_THROW(read_eval_jsonl(p), InputError);
}

TEST_F(EvalSet, Errors) {
  EXPECT_EQ(error_of("{\"text\": \"a\"}\n{\"text\": \"b\"\n").rfind(":2: not valid JSON: ", 0), 0u);
  EXPECT_EQ(error_of("[1, 2]\n"), ":1: expected a JSON object {\"id\": ..., \"text\": ...}");
  EXPECT_EQ(error_of("\"text\"\n"), ":1: expected a JSON object {\"id\": ..., \"text\": ...}");
  EXPECT_EQ(error_of("\n{\"id\": 1, \"txt\": \"a\"}\n"), ":2: no field 'text'");
  EXPECT_EQ(error_of("{\"id\": 1, \"text\": 5}\n"), ":1: field 'text' is not a string");
  EXPECT_EQ(error_of("{\"id\": 1, \"text\": null}\n"), ":1: field 'text' is not a string");
  EXPECT_EQ(error_of("{\"id\": 1, \"text\": \"\"}\n"), ":1: field 'text' is empty");
  EXPECT_EQ(error_of("{\"id\": 1, \"text\": \"a\xFF\"}\n"), ":1: invalid UTF-8 at byte 21 of the line");
  EXPECT_EQ(error_of("{\"id\": 1, \"text\": \"\xED\xA0\x80\"}\n"),
            ":1: invalid UTF-8 at byte 20 of the line");
  EXPECT_EQ(error_of("{\"id\": \"a\", \"text\": \"x\"}\n\n{\"id\": \"a\", \"text\": \"y\"}\n"),
            ":3: duplicate id 'a' (first on line 1)");
  EXPECT_EQ(error_of("{\"id\": 3, \"text\": \"x\"}\n{\"id\": 3, \"text\": \"y\"}\n"),
            ":2: duplicate id '3' (first on line 1)");
  EXPECT_EQ(error_of("{\"id\": true, \"text\": \"x\"}\n"), ":1: field 'id' must be a string or a number");
  EXPECT_EQ(error_of("{\"id\": \"\", \"text\": \"x\"}\n"), ":1: field 'id' is empty");
  EXPECT_EQ(error_of("\n  \n"), ": no documents");
  EXPECT_EQ(error_of(""), ": no documents");
  EXPECT_EQ(error_of("{\"id\": 1, \"body\": \"a\"}\n", "body2"), ":1: no field 'body2'");
}

TEST_F(EvalSet, MissingFile) {
  try {
    read_eval_jsonl((dir_ / "none.jsonl").string());
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), (dir_ / "none.jsonl").string() + ": cannot open: No such file or directory");
  }
}

TEST(Utf8, ErrorOffset) {
  constexpr auto ok = std::string_view::npos;
  EXPECT_EQ(utf8_error_offset(""), ok);
  EXPECT_EQ(utf8_error_offset("plain ascii"), ok);
  EXPECT_EQ(utf8_error_offset("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x99\x82 \xF4\x8F\xBF\xBF"), ok);
  EXPECT_EQ(utf8_error_offset("ab\x80"), 2u);            // stray continuation
  EXPECT_EQ(utf8_error_offset("\xC0\x80"), 0u);          // overlong NUL
  EXPECT_EQ(utf8_error_offset("x\xE0\x80\xAF"), 1u);     // overlong 3-byte
  EXPECT_EQ(utf8_error_offset("\xED\xA0\x80"), 0u);      // surrogate
  EXPECT_EQ(utf8_error_offset("\xF4\x90\x80\x80"), 0u);  // past U+10FFFF
  EXPECT_EQ(utf8_error_offset("abc\xE2\x82"), 3u);       // truncated at the end
  EXPECT_EQ(utf8_error_offset("\xF0\x9F\x99x"), 0u);     // bad continuation
  EXPECT_EQ(utf8_error_offset("\xFF"), 0u);
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 % 256);
  return s;
}

TEST(Sha256, Fips180Vectors) {
  auto h = [](const std::string& s) { return sha256_hex(s.data(), s.size()); };
  EXPECT_EQ(h(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(h("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(h("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(h("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopq"
              "rsmnopqr"
              "stnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(h(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundariesMatchHashlib) {
  // hashlib.sha256(bytes(i * 7 % 256 for i in range(n))).hexdigest()
  const std::pair<std::size_t, const char*> cases[] = {
      {55, "576a1bf8d4478657e6dc4af9398544765c2a92cde28478b019235cfed315fc09"},
      {56, "9b20501dfd1d99161c257950f3444f3e49230c351c5c8e0943ef369f85f5205d"},
      {63, "30b345906b493f06f69444b6521113511c242f30e29840462950035043682f1e"},
      {64, "d8bc63b4fc1156e5e7d95a418b9bf54cd3174bedbc2db40f74895349b229b3c0"},
      {65, "1ee23b0fbcaecc1aff4a9e8f1645f35ab2c8e13609cd73b68df8b5e3f63ce073"},
      {119, "7a6589821178918ca8d9edaba5abfc1e9b2669564f4469b66885379c1530b2c8"},
      {120, "655250427d56b1b0eeb8497d21428704273458a01772d6881b65c0abac0f8a98"},
      {128, "54c9eb041badfd7064645067b107661fed6113197ce2dd066ba69618abd3732f"},
  };
  for (auto [n, hex] : cases) {
    auto s = pattern(n);
    EXPECT_EQ(sha256_hex(s.data(), s.size()), hex) << n;
  }
}

TEST_F(EvalSet, Sha256FileAcrossReadChunks) {
  auto s = pattern((1u << 20) + 3);  // the file reader's buffer is 1 MiB
  auto p = write("big.bin", s);
  EXPECT_EQ(sha256_file(p), "b1792c9482903d801f37a8a1408fbf70cc87b2bdcd6e9e47258294e1222f4391");
  EXPECT_THROW(sha256_file((dir_ / "none").string()), InputError);
}

}  // namespace

namespace {
// The eval set's other fields are kept (results.h5 stores them as docs/<field>): strings as they are,
// anything else as its JSON text, in name order; the id and the text field are not among them.
TEST_F(EvalSet, KeepsTheOtherFields) {
  auto p = write("f.jsonl",
                 "{\"id\": 16, \"n_tokens\": 512, \"source_id\": \"sotu-1907_theodore_roosevelt_r\", \"text\": \"a\"}\n"
                 "{\"id\": \"b\", \"body\": \"x\", \"text\": \"b\", \"tags\": [1, \"two\"], \"ok\": true}\n");
  auto d = read_eval_jsonl(p);
  ASSERT_EQ(d.size(), 2u);
  using F = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(d[0].fields, (F{{"n_tokens", "512"}, {"source_id", "sotu-1907_theodore_roosevelt_r"}}));
  EXPECT_EQ(d[1].fields, (F{{"body", "x"}, {"ok", "true"}, {"tags", "[1,\"two\"]"}}));
  auto q = write("g.jsonl", "{\"id\": \"b\", \"body\": \"x\", \"text\": \"b\"}\n");
  auto e = read_eval_jsonl(q, "body");  // another text field: "text" is then an ordinary field
  EXPECT_EQ(e[0].text, "x");
  EXPECT_EQ(e[0].fields, (F{{"text", "b"}}));
}
}  // namespace
