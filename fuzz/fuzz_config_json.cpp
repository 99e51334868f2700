// config.json -> ModelSpec (every family's reader, RoPE scaling, layer
// types), and the same through a GGUF file's metadata (inputs starting with
// "GGUF" are written to a .gguf and opened as a model: metadata -> config ->
// spec). Links libtorch, since the family readers live beside their weight
// tables; no tensor is loaded.
#include "fuzz_util.hpp"
#include "sink/model/spec.hpp"
#include "sink/model/weight_source.hpp"

namespace {

void check(const sink::ModelSpec& s) {
  using sink::fuzz::finding;
  if (s.n_layers <= 0 || s.d_model <= 0 || s.n_heads <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0 ||
      s.vocab <= 0 || s.d_ff <= 0)
    finding("a spec with a non-positive size was accepted");
  if (s.n_heads % s.n_kv_heads != 0) finding("n_kv_heads does not divide n_heads");
  if (static_cast<int>(s.sliding_window.size()) != s.n_layers) finding("sliding_window has the wrong length");
  for (int w : s.sliding_window)
    if (w < 0) finding("a negative sliding window was accepted");
  if (s.rope.rotary_dim <= 0 || s.rope.rotary_dim > s.head_dim || s.rope.rotary_dim % 2)
    finding("rotary_dim " + std::to_string(s.rope.rotary_dim) + " for head_dim " + std::to_string(s.head_dim));
  if (!(s.attn_scale > 0)) finding("attn_scale is not positive");
  if (s.n_experts < 0 || s.top_k < 0 || s.top_k > s.n_experts) finding("top_k / n_experts inconsistent");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  const std::string_view in = fuzz::as_text(data, size);
  if (in.starts_with("GGUF")) {
    const std::string path = fuzz::write_file("model.gguf", in);
    fuzz::expect_ok_or_input_error([&] {
      GGUFModel m = open_gguf_model(path);
      check(m.spec);
      for (const auto& n : m.weights->names())
        if (!m.weights->has(n)) fuzz::finding("weight '" + n + "' listed but not present");
    });
    return 0;
  }
  fuzz::expect_ok_or_input_error([&] { check(spec_from_hf_config_text(std::string(in), "config.json")); });
  return 0;
}
