// Evaluation sets (JSON Lines): UTF-8 checks, JSON per line, fields, ids.
#include "fuzz_util.hpp"
#include "sink/config/eval_set.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  const std::string path = fuzz::write_file("eval.jsonl", fuzz::as_text(data, size));
  fuzz::expect_ok_or_input_error([&] {
    auto docs = read_eval_jsonl(path);
    for (const auto& d : docs) {
      if (d.text.empty() || d.id.empty()) fuzz::finding("a document with an empty text or id was accepted");
      if (utf8_error_offset(d.text) != std::string_view::npos) fuzz::finding("a document with invalid UTF-8 was accepted");
    }
  });
  fuzz::expect_ok_or_input_error([&] { (void)read_eval_jsonl(path, "id", 3); });
  return 0;
}
