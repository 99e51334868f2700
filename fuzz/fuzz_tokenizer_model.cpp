// SentencePiece tokenizer.model (protobuf read by hand): pieces, trainer and
// normalizer specs, the merges generated from the vocabulary, then the
// tokenizer built from it on sample text.
#include "fuzz_util.hpp"
#include "sink/tok/hf_pipeline.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  fuzz::expect_ok_or_input_error([&] {
    tok::Pipeline p = tok::parse_sentencepiece_model("tokenizer.model", std::string(fuzz::as_text(data, size)));
    auto t = tok::make_hf_tokenizer(std::move(p), "", "");
    fuzz::exercise_tokenizer(*t, fuzz::kSampleText);
  });
  return 0;
}
