// safetensors file: header length, JSON header, entries checked against the
// data buffer, then every tensor converted to float32 where the dtype allows.
#include <vector>

#include "fuzz_util.hpp"
#include "sink/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  const std::string path = fuzz::write_file("model.safetensors", fuzz::as_text(data, size));
  fuzz::expect_ok_or_input_error([&] {
    SafetensorsFile f(path);
    for (const auto& t : f.tensors()) {
      if (f.find(t.name) == nullptr) fuzz::finding("tensor '" + t.name + "' listed but not found");
      const std::int64_t n = t.numel();
      if (n < 0 || static_cast<std::uint64_t>(n) * dtype_size(t.dtype) != t.nbytes)
        fuzz::finding("tensor '" + t.name + "': numel and nbytes disagree");
      if ((t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F64) &&
          t.nbytes <= (1u << 20)) {
        std::vector<float> out(static_cast<std::size_t>(n));
        to_float32(t, out.data());
      }
    }
    (void)f.metadata();
  });
  return 0;
}
