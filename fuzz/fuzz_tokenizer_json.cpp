// tokenizer.json: the pipeline parser (normalizers, pre-tokenizers with
// their regexes, BPE vocabulary and merges, post-processor, decoders, added
// tokens), then the tokenizer built from it on sample text.
#include "fuzz_util.hpp"
#include "sink/tok/hf_pipeline.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  fuzz::expect_ok_or_input_error([&] {
    tok::Pipeline p = tok::parse_tokenizer_json("tokenizer.json", std::string(fuzz::as_text(data, size)));
    auto t = tok::make_hf_tokenizer(std::move(p), "", "");
    fuzz::exercise_tokenizer(*t, fuzz::kSampleText);
  });
  return 0;
}
