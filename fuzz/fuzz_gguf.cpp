// GGUF: header, metadata, tensor infos and data ranges; then the typed
// metadata accessors, every tensor's view and (when small) its
// dequantisation, and the vocabulary (llama SentencePiece or gpt2 byte-level
// BPE) with a few encodes and decodes.
#include <vector>

#include "fuzz_util.hpp"
#include "sink/io/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  const std::string path = fuzz::write_file("model.gguf", fuzz::as_text(data, size));
  fuzz::expect_ok_or_input_error([&] {
    GGUFFile f(path);
    for (const auto& kv : f.metadata()) {
      const std::string& key = kv.first;
      fuzz::expect_ok_or_input_error([&] { (void)f.get_string(key); });
      fuzz::expect_ok_or_input_error([&] { (void)f.get_int(key); });
      fuzz::expect_ok_or_input_error([&] { (void)f.get_float(key); });
      fuzz::expect_ok_or_input_error([&] { (void)f.get_string_array(key); });
      fuzz::expect_ok_or_input_error([&] { (void)f.get_float_array(key); });
      fuzz::expect_ok_or_input_error([&] { (void)f.get_int_array(key); });
    }
    for (const auto& t : f.tensors()) {
      if (f.find(t.name) != &t) fuzz::finding("tensor '" + t.name + "' not found by name");
      if (t.offset > size || t.nbytes > size - t.offset)
        fuzz::finding("tensor '" + t.name + "' data lies outside the file");
      (void)f.view(t);
      if (ggml_can_dequantize(t.type) && t.nbytes <= (1u << 20)) {
        std::int64_t n = 1;
        for (auto d : t.ne) n *= d;
        if (n <= (1 << 22)) fuzz::expect_ok_or_input_error([&] { (void)f.to_float32(t); });
      }
    }
    auto tok = load_gguf_tokenizer(f);
    fuzz::exercise_tokenizer(*tok, fuzz::kSampleText);
  });
  return 0;
}
