// Evaluation sets (JSON Lines). Every problem names FILE:LINE, since eval sets
// are made and edited by hand as often as by sink-make-eval-set.
#include "sink/config/eval_set.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "sink/util/error.hpp"
#include "sink/util/mapped_file.hpp"

namespace sink {

std::size_t utf8_error_offset(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    unsigned char b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;  // overlong
      if (b == 0xED) hi = 0x9F;  // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;  // overlong
      if (b == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      return i;
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::vector<EvalDoc> read_eval_jsonl(const std::string& path, const std::string& field, std::int64_t max_docs) {
  return read_eval_jsonl(path, field, max_docs, nullptr);
}

std::vector<EvalDoc> read_eval_jsonl(const std::string& path, const std::string& field, std::int64_t max_docs,
                                     std::string* sha256) {
  // Read once, whole, from a regular file: the documents and the hash come from the same
  // bytes (a pipe read twice would hash nothing), and a FIFO or /dev/zero is refused.
  const std::string bytes = read_regular_file(path, kMaxEvalBytes);
  if (sha256) *sha256 = sha256_hex(bytes.data(), bytes.size());
  std::vector<EvalDoc> docs;
  std::unordered_map<std::string, std::size_t> seen;  // id -> line
  std::string line;
  std::size_t lineno = 0, pos = 0;
  while ((max_docs <= 0 || static_cast<std::int64_t>(docs.size()) < max_docs) && pos < bytes.size()) {
    const auto nl = bytes.find('\n', pos);
    line.assign(bytes, pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? bytes.size() : nl + 1;
    ++lineno;
    const std::string at = path + ":" + std::to_string(lineno);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (auto bad = utf8_error_offset(line); bad != std::string_view::npos)
      throw InputError(at, "invalid UTF-8 at byte " + std::to_string(bad + 1) + " of the line");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
      std::string msg = e.what();
      if (auto p = msg.find("] "); msg.rfind("[json.exception", 0) == 0 && p != std::string::npos)
        msg = msg.substr(p + 2);
      throw InputError(at, "not valid JSON: " + msg);
    }
    if (!j.is_object()) throw InputError(at, "expected a JSON object {\"id\": ..., \"" + field + "\": ...}");
    auto t = j.find(field);
    if (t == j.end()) throw InputError(at, "no field '" + field + "'");
    if (!t->is_string()) throw InputError(at, "field '" + field + "' is not a string");
    EvalDoc d;
    d.text = t->get<std::string>();
    if (d.text.empty()) throw InputError(at, "field '" + field + "' is empty");
    if (auto id = j.find("id"); id == j.end()) {
      d.id = std::to_string(lineno);
    } else if (id->is_string()) {
      d.id = id->get<std::string>();
      if (d.id.empty()) throw InputError(at, "field 'id' is empty");
    } else if (id->is_number()) {
      d.id = id->dump();
    } else {
      throw InputError(at, "field 'id' must be a string or a number");
    }
    if (auto [it, fresh] = seen.emplace(d.id, lineno); !fresh)
      throw InputError(at, "duplicate id '" + d.id + "' (first on line " + std::to_string(it->second) + ")");
    // Every other field goes into results.h5 (docs/<name>): strings as they are, anything else as JSON.
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "id" && it.key() != field)
        d.fields.emplace_back(it.key(), it->is_string() ? it->get<std::string>() : it->dump());
    docs.push_back(std::move(d));
  }
  if (docs.empty()) throw InputError(path, "no documents");
  return docs;
}

}  // namespace sink
