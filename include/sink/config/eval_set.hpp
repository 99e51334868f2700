// Evaluation sets: JSON Lines, one document a line: {"id": ..., "text": ...}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sink {

struct EvalDoc {
  std::string id;  // the "id" field as a string (numbers are printed), or the line number if absent
  std::string text;
  // The line's other fields (source_id, ...), in name order: strings as they are, other values as JSON text.
  std::vector<std::pair<std::string, std::string>> fields;
};

// Reads every document. A malformed line, a missing or non-string text
// field, an empty text, invalid UTF-8 or a duplicate id is an InputError
// naming the file and the line number. `max_docs` > 0 stops after that many.
std::vector<EvalDoc> read_eval_jsonl(const std::string& path, const std::string& field = "text",
                                     std::int64_t max_docs = 0);
// The same, also giving the sha256 of the bytes the documents were read from (the
// whole file, read once). Only regular files of at most kMaxEvalBytes are read.
std::vector<EvalDoc> read_eval_jsonl(const std::string& path, const std::string& field, std::int64_t max_docs,
                                     std::string* sha256);
inline constexpr std::size_t kMaxEvalBytes = std::size_t(16) << 30;

// sha256 of a file's bytes, hex (for manifests and results.h5 attributes).
std::string sha256_file(const std::string& path);
std::string sha256_hex(const void* data, std::size_t n);

// Byte offset of the first ill-formed UTF-8 sequence in s (overlongs,
// surrogates and code points past U+10FFFF included), or npos if s is valid.
std::size_t utf8_error_offset(std::string_view s);

}  // namespace sink
