// sink-make-eval-set: a reproducible evaluation set from a local corpus.
//
//   sink-make-eval-set --corpus FILE_OR_DIR --n_samples N --max_length TOKENS --seed S
//                      --tokenizer PATH --output DIR [--min_length TOKENS] [--field text]
//
// Writes DIR/eval.jsonl and DIR/manifest.json, byte-identical on every machine
// for the same inputs: the sampler is our own (SplitMix64 + partial
// Fisher-Yates; std:: distributions differ between standard libraries), JSON
// keys are sorted, and nothing records the time or the working directory.
// The algorithm is documented in docs/config.md.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "sink/cli/args.hpp"
#include "sink/config/eval_set.hpp"
#include "sink/tok/tokenizer.hpp"
#include "sink/util/atomic_file.hpp"
#include "sink/util/error.hpp"

namespace fs = std::filesystem;
using sink::InputError;

namespace {

constexpr const char* kTool = "sink-make-eval-set";
constexpr const char* kToolVersion = "0.1.0";
// Bump when anything that changes the output changes.
constexpr const char* kAlgorithm = "splitmix64-fisher-yates-v1";
// How many shorter prefixes to try when the cut at max_length does not re-encode exactly.
constexpr std::size_t kMaxBackoff = 16;

constexpr const char* kUsage =
    "usage: sink-make-eval-set --corpus FILE_OR_DIR --n_samples N --max_length TOKENS --seed S\n"
    "                          --tokenizer PATH --output DIR [--min_length TOKENS] [--field text]\n"
    "  FILE_OR_DIR: JSON Lines with a text field (--field), or a folder of .txt files.\n"
    "  Samples N documents with at least --min_length tokens (default 1), truncates each to\n"
    "  --max_length tokens (no special tokens), writes DIR/eval.jsonl and DIR/manifest.json.\n";

// SplitMix64 (Steele, Lea, Flood 2014): tiny, fully specified, same on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, m), unbiased: draws below 2^64 mod m are rejected.
  std::uint64_t below(std::uint64_t m) {
    const std::uint64_t threshold = (0 - m) % m;
    for (;;)
      if (std::uint64_t r = next(); r >= threshold) return r % m;
  }

 private:
  std::uint64_t s_;
};

struct SourceDoc {
  std::string id;
  std::string text;
  std::size_t n_tokens = 0;
};

std::string read_whole(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw InputError(p.string(), "cannot open");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw InputError(p.string(), "read error");
  return s;
}

// A folder of .txt files, sorted by file name (bytewise). Also returns the
// folder's hash: sha256 of the `sha256sum`-style listing "HEX  NAME\n" per file.
std::vector<SourceDoc> read_txt_folder(const std::string& dir, std::string& hash) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  if (names.empty()) throw InputError(dir, "no .txt files in this folder");
  std::vector<SourceDoc> docs;
  std::string listing;
  for (const auto& name : names) {
    fs::path p = fs::path(dir) / name;
    SourceDoc d{name, read_whole(p), 0};
    if (auto bad = sink::utf8_error_offset(d.text); bad != std::string_view::npos)
      throw InputError(p.string(), "invalid UTF-8 at byte " + std::to_string(bad + 1));
    listing += sink::sha256_hex(d.text.data(), d.text.size()) + "  " + name + "\n";
    docs.push_back(std::move(d));
  }
  hash = sink::sha256_hex(listing.data(), listing.size());
  return docs;
}

// The files load_tokenizer reads for PATH, by file name, with their hashes.
nlohmann::json tokenizer_files(const std::string& path) {
  fs::path p(path);
  std::vector<fs::path> files;
  if (fs::is_directory(p)) {
    files.push_back(fs::exists(p / "tokenizer.json") ? p / "tokenizer.json" : p / "tokenizer.model");
    if (fs::exists(p / "tokenizer_config.json")) files.push_back(p / "tokenizer_config.json");
  } else {
    files.push_back(p);
    fs::path cfg = p.parent_path().empty() ? fs::path("tokenizer_config.json")
                                           : p.parent_path() / "tokenizer_config.json";
    if (p.extension() != ".gguf" && fs::exists(cfg)) files.push_back(cfg);
  }
  nlohmann::json j = nlohmann::json::object();
  for (const auto& f : files) j[f.filename().string()] = sink::sha256_file(f.string());
  return j;
}

struct Cut {
  std::string text;
  std::size_t n_tokens = 0;
  bool truncated = false;
  bool exact = true;        // re-encoding gives exactly the first n_tokens ids of the document
  bool from_source = true;  // the text is a byte prefix of the source text
};

bool is_prefix(const std::string& text, const std::string& p) { return text.compare(0, p.size(), p) == 0; }

// Cuts `text` at a token boundary: decodes the first k ids (the tokenizer API
// has no offsets) and keeps the cut when the decoded text is a byte prefix of
// the original, i.e. the output is the original text cut at that byte offset.
// k starts at max_length and backs off (a multi-byte character split between
// tokens, or a cut word that re-encodes differently) until the cut re-encodes
// to exactly ids[0..k). Without such a cut, the best one that still fits is
// used and reported.
Cut truncate(const sink::Tokenizer& tok, const std::string& text, std::size_t max_length) {
  const std::vector<std::int32_t> ids = tok.encode(text, false);
  if (ids.size() <= max_length) return {text, ids.size(), false, true, true};
  std::optional<Cut> fallback;
  const std::size_t lowest = max_length > kMaxBackoff ? max_length - kMaxBackoff : 1;
  for (std::size_t k = max_length; k >= lowest; --k) {
    std::span<const std::int32_t> prefix(ids.data(), k);
    std::string d = tok.decode(prefix, false);
    if (d.empty()) continue;
    const bool from_source = is_prefix(text, d);
    if (!from_source && fallback) continue;  // a decoded-only cut is the last resort
    std::vector<std::int32_t> re = tok.encode(d, false);
    if (re.size() > max_length) continue;
    const bool exact = std::equal(re.begin(), re.end(), prefix.begin(), prefix.end());
    if (exact && from_source) return {std::move(d), re.size(), true, true, true};
    if (!fallback || (from_source && !fallback->from_source))
      fallback = Cut{std::move(d), re.size(), true, exact, from_source};
  }
  if (!fallback) throw std::runtime_error("no cut of a document re-encodes to at most max_length tokens");
  return *fallback;
}

std::uint64_t parse_u64(const sink::Args& a, const std::string& flag) {
  auto v = a.get(flag);
  if (!v) throw InputError(flag, "is required");
  std::uint64_t x = 0;
  auto r = std::from_chars(v->data(), v->data() + v->size(), x);
  if (v->empty() || r.ec != std::errc() || r.ptr != v->data() + v->size())
    throw InputError(flag, "expected a non-negative integer, got '" + *v + "'");
  return x;
}

std::size_t parse_count(const sink::Args& a, const std::string& flag, std::optional<std::size_t> def = {}) {
  if (!a.has(flag)) {
    if (def) return *def;
    throw InputError(flag, "is required");
  }
  long long v = a.get_int(flag, 0);
  if (v < 1) throw InputError(flag, "expected a positive integer, got " + std::to_string(v));
  return static_cast<std::size_t>(v);
}

std::string required(const sink::Args& a, const std::string& flag) {
  auto v = a.get(flag);
  if (!v || v->empty()) throw InputError(flag, "is required");
  return *v;
}

void write_file(const fs::path& p, const std::string& bytes) {
  sink::write_file_atomic(p.string(), bytes);  // a killed run never leaves half a file
}

int body(int argc, char** argv) {
  sink::Args a(argc, argv,
               {"--corpus", "--n_samples", "--max_length", "--seed", "--tokenizer", "--output",
                "--min_length", "--field"},
               {"--help"});
  if (a.has("--help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!a.positional().empty()) throw InputError("", "unexpected argument '" + a.positional()[0] + "'");
  const std::string corpus = required(a, "--corpus");
  const std::string tokenizer_path = required(a, "--tokenizer");
  const std::string output = required(a, "--output");
  const std::string field = a.get_or("--field", "text");
  if (field.empty()) throw InputError("--field", "expected a field name");
  const std::size_t n_samples = parse_count(a, "--n_samples");
  const std::size_t max_length = parse_count(a, "--max_length");
  const std::size_t min_length = parse_count(a, "--min_length", 1);
  const std::uint64_t seed = parse_u64(a, "--seed");

  auto log = std::make_shared<spdlog::logger>(kTool, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log->set_pattern("%n: %v");
  spdlog::set_default_logger(log);

  auto tok = sink::load_tokenizer(tokenizer_path);
  spdlog::info("tokenizer {}: {}", tokenizer_path, tok->describe());

  std::error_code ec;
  const bool is_dir = fs::is_directory(corpus, ec);
  if (!is_dir && !fs::exists(corpus, ec)) throw InputError(corpus, "no such file or folder");
  std::string corpus_hash;
  std::vector<SourceDoc> docs;
  if (is_dir) {
    docs = read_txt_folder(corpus, corpus_hash);
  } else {
    for (auto& d : sink::read_eval_jsonl(corpus, field))
      docs.push_back({std::move(d.id), std::move(d.text), 0});
    corpus_hash = sink::sha256_file(corpus);
  }
  spdlog::info("corpus {}: {} documents; counting tokens", corpus, docs.size());

  // Candidates in corpus order; the order matters to the sampler.
  std::vector<std::size_t> candidates;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    docs[i].n_tokens = tok->encode(docs[i].text, false).size();
    if (docs[i].n_tokens >= min_length) candidates.push_back(i);
  }
  if (candidates.size() < n_samples)
    throw InputError(corpus, "only " + std::to_string(candidates.size()) + " of " +
                                 std::to_string(docs.size()) + " documents have at least " +
                                 std::to_string(min_length) + " tokens; asked for " +
                                 std::to_string(n_samples));

  // Partial Fisher-Yates: draw i swaps candidates[i] with a uniform pick from
  // [i, E). The first n of a larger sample with the same seed are this sample.
  SplitMix64 rng(seed);
  const std::size_t e = candidates.size();
  for (std::size_t i = 0; i < n_samples; ++i) std::swap(candidates[i], candidates[i + rng.below(e - i)]);

  std::string jsonl;
  std::vector<std::size_t> lengths;
  std::size_t truncated = 0;
  nlohmann::json mismatched = nlohmann::json::array(), decoded_only = nlohmann::json::array();
  for (std::size_t i = 0; i < n_samples; ++i) {
    const SourceDoc& d = docs[candidates[i]];
    Cut c = truncate(*tok, d.text, max_length);
    if (c.truncated) ++truncated;
    if (!c.exact) {
      spdlog::warn(
          "warning: document {}: the truncated text re-encodes to ids that differ from the document's first "
          "{}",
          d.id, c.n_tokens);
      mismatched.push_back(i);
    }
    if (!c.from_source) {
      spdlog::warn(
          "warning: document {}: no token boundary decodes to a prefix of the text; using the decoded prefix",
          d.id);
      decoded_only.push_back(i);
    }
    nlohmann::json row = {
        {"id", i}, {"n_tokens", c.n_tokens}, {"source_id", d.id}, {"text", std::move(c.text)}};
    jsonl += row.dump() + "\n";
    lengths.push_back(c.n_tokens);
  }

  std::vector<std::size_t> sorted = lengths;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (auto x : sorted) sum += static_cast<double>(x);
  const std::size_t m = sorted.size();
  const double median =
      m % 2 ? static_cast<double>(sorted[m / 2])
            : (static_cast<double>(sorted[m / 2 - 1]) + static_cast<double>(sorted[m / 2])) / 2;

  nlohmann::json manifest = {
      {"algorithm", kAlgorithm},
      {"corpus",
       {{"path", corpus},
        {"kind", is_dir ? "txt_folder" : "jsonl"},
        {"field", is_dir ? nlohmann::json(nullptr) : nlohmann::json(field)},
        {"sha256", corpus_hash},
        {"n_documents", docs.size()}}},
      {"seed", seed},
      {"n_samples", n_samples},
      {"min_length", min_length},
      {"max_length", max_length},
      {"special_tokens", false},
      {"tokenizer",
       {{"path", tokenizer_path}, {"describe", tok->describe()}, {"files", tokenizer_files(tokenizer_path)}}},
      {"counts",
       {{"corpus_documents", docs.size()},
        {"eligible", e},
        {"sampled", n_samples},
        {"truncated", truncated},
        {"reencode_mismatch", mismatched.size()},
        {"decoded_not_source_prefix", decoded_only.size()}}},
      {"reencode_mismatch_ids", mismatched},
      {"decoded_not_source_prefix_ids", decoded_only},
      {"n_tokens",
       {{"min", sorted.front()},
        {"max", sorted.back()},
        {"mean", sum / static_cast<double>(m)},
        {"median", median}}},
      {"output", {{"eval_jsonl", "eval.jsonl"}, {"sha256", sink::sha256_hex(jsonl.data(), jsonl.size())}}},
      {"tool", {{"name", kTool}, {"version", kToolVersion}}},
  };

  fs::create_directories(output, ec);
  if (ec) throw InputError(output, "cannot create the folder: " + ec.message());
  write_file(fs::path(output) / "eval.jsonl", jsonl);
  write_file(fs::path(output) / "manifest.json", manifest.dump(2) + "\n");
  spdlog::info("wrote {} documents ({} truncated, {} eligible of {}) to {}", n_samples, truncated, e,
               docs.size(), (fs::path(output) / "eval.jsonl").string());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return sink::run_cli(kTool, body, argc, argv); }
