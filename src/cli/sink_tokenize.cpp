// sink-tokenize: token ids of documents as HF's add_special_tokens=True gives
// them (one JSON array per document, one per line), or text of id arrays.
//
//   sink-tokenize --tokenizer PATH (--jsonl FILE [--field text] | --text STRING)
//                 [--no-special] [--decode] [--skip-special] [--bench]
//   sink-tokenize --tokenizer PATH --info
#include <chrono>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sink/tok/tokenizer.hpp"
#include "sink/tok/unicode.hpp"
#include "sink/util/error.hpp"
#include "sink/util/mapped_file.hpp"

namespace {

constexpr const char* kUsage =
    "usage: sink-tokenize --tokenizer PATH (--jsonl FILE [--field text] | --text STRING)\n"
    "                     [--no-special] [--decode [--skip-special]] [--bench]\n"
    "  PATH: a snapshot directory, tokenizer.json, tokenizer.model or .gguf.\n"
    "  Encodes: one JSON array of ids per document (a JSON Lines record, or --text).\n"
    "  --decode: reads JSON arrays of ids (from --jsonl FILE or stdin), writes JSON strings.\n"
    "  --info: prints what was loaded (kind, vocab size, BOS/EOS and whether they are added).\n"
    "  --bench: encodes all documents of --jsonl FILE once, single thread, and prints one\n"
    "           JSON line of timings (load, docs/s, MB/s, tokens/s) instead of the ids.\n";

struct Args {
  std::string tokenizer, jsonl, field = "text", text;
  bool have_text = false, no_special = false, decode = false, skip_special = false, bench = false,
       info = false;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw sink::InputError("", k + " needs a value");
      return argv[++i];
    };
    if (k == "--tokenizer") a.tokenizer = value();
    else if (k == "--jsonl") a.jsonl = value();
    else if (k == "--field") a.field = value();
    else if (k == "--text") { a.text = value(); a.have_text = true; }
    else if (k == "--no-special") a.no_special = true;
    else if (k == "--decode") a.decode = true;
    else if (k == "--skip-special") a.skip_special = true;
    else if (k == "--bench") a.bench = true;
    else if (k == "--info") a.info = true;
    else if (k == "-h" || k == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    else throw sink::InputError("", "unknown argument '" + k + "'");
  }
  if (a.tokenizer.empty()) throw sink::InputError("", "--tokenizer PATH is required");
  if (a.info) return a;
  if (!a.decode && a.jsonl.empty() == !a.have_text)
    throw sink::InputError("", "give exactly one of --jsonl FILE or --text STRING");
  if (a.decode && a.have_text) throw sink::InputError("", "--decode reads ids from --jsonl FILE or stdin, not --text");
  if (a.bench && (a.jsonl.empty() || a.decode)) throw sink::InputError("", "--bench needs --jsonl FILE (and no --decode)");
  return a;
}

void write_ids(std::string& out, const std::vector<std::int32_t>& ids) {
  out += '[';
  char buf[16];
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    auto r = std::to_chars(buf, buf + sizeof buf, ids[i]);
    out.append(buf, r.ptr);
  }
  out += "]\n";
}

void flush(std::string& out) {
  std::fwrite(out.data(), 1, out.size(), stdout);
  out.clear();
}

int run(const Args& a) {
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  auto tok = sink::load_tokenizer(a.tokenizer);
  double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::string out;
  if (a.info) {
    auto opt = [](std::optional<std::int32_t> v) { return v ? nlohmann::json(*v) : nlohmann::json(); };
    nlohmann::json r = {{"tokenizer", a.tokenizer}, {"kind", tok->describe()}, {"vocab_size", tok->vocab_size()},
                        {"bos_id", opt(tok->bos_id())}, {"eos_id", opt(tok->eos_id())},
                        {"adds_bos", tok->adds_bos()}, {"adds_eos", tok->adds_eos()}, {"load_s", load_s}};
    out = r.dump() + "\n";
    flush(out);
    return 0;
  }
  if (a.have_text) {
    write_ids(out, tok->encode(a.text, !a.no_special));
    flush(out);
    return 0;
  }
  std::ifstream file;
  std::istream* in = &std::cin;
  std::string where = "<stdin>";
  if (!a.jsonl.empty()) {
    sink::check_regular_file(a.jsonl);  // /dev/zero has no lines: it would read forever, then print nothing
    file.open(a.jsonl, std::ios::binary);
    if (!file) throw sink::InputError(a.jsonl, "cannot open");
    in = &file;
    where = a.jsonl;
  }
  std::string line;
  std::size_t lineno = 0;
  std::vector<std::string> bench_docs;
  while (std::getline(*in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto at = [&] { return where + ":" + std::to_string(lineno); };
    nlohmann::json j;
    try {
      // Raw invalid UTF-8 in a record is read as U+FFFD, as Python would.
      j = nlohmann::json::parse(sink::tok::is_valid_utf8(line) ? line : sink::tok::utf8_lossy(line));
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
      throw sink::InputError(at(), std::string("not valid JSON: ") + e.what());
    }
    if (a.decode) {
      if (!j.is_array()) throw sink::InputError(at(), "expected a JSON array of ids");
      std::vector<std::int32_t> ids;
      ids.reserve(j.size());
      for (const auto& v : j) {
        if (!v.is_number_integer()) throw sink::InputError(at(), "ids must be integers");
        ids.push_back(v.get<std::int32_t>());
      }
      out += nlohmann::json(tok->decode(ids, a.skip_special)).dump(-1, ' ', false,
                                                                    nlohmann::json::error_handler_t::replace);
      out += '\n';
    } else {
      if (!j.is_object() || !j.contains(a.field) || !j[a.field].is_string())
        throw sink::InputError(at(), "no string field '" + a.field + "'");
      if (a.bench) bench_docs.push_back(j[a.field].get<std::string>());
      else write_ids(out, tok->encode(j[a.field].get_ref<const std::string&>(), !a.no_special));
    }
    if (out.size() > (1u << 20)) flush(out);
  }
  if (a.bench) {
    std::size_t bytes = 0, tokens = 0;
    auto t1 = Clock::now();
    for (const auto& d : bench_docs) {
      bytes += d.size();
      tokens += tok->encode(d, !a.no_special).size();
    }
    double s = std::chrono::duration<double>(Clock::now() - t1).count();
    nlohmann::json r = {{"tokenizer", a.tokenizer}, {"load_s", load_s}, {"docs", bench_docs.size()},
                        {"bytes", bytes}, {"tokens", tokens}, {"encode_s", s},
                        {"docs_per_s", bench_docs.size() / s}, {"mb_per_s", bytes / s / 1e6},
                        {"tokens_per_s", tokens / s}};
    out = r.dump() + "\n";
  }
  flush(out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const sink::InputError& e) {
    std::fprintf(stderr, "sink-tokenize: error: %s\n", e.what());
    return sink::kExitBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sink-tokenize: internal error: %s\n", e.what());
    return 1;
  }
}
