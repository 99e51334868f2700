// A model with random weights from a published config.json alone: sizes whose weights are
// not on this machine (a 7B-shaped run, a benchmark) need no download.
//   sink-run:   model: random:data/model_specs/llama2_7b_hf/config.json   (or the folder)
//   sink-bench: --random-weights data/model_specs/llama2_7b_hf/config.json
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "sink/model/model.hpp"

namespace sink {

inline constexpr const char* kRandomModelPrefix = "random:";

// "random:PATH" → PATH's config.json (PATH a config.json or its folder); "" for any other model.
std::string random_model_config(const std::string& model);

// Weights drawn from seeded generators on opt.device (the CPU's, or the GPU's), then cast: the
// same values on every rank of one kind of device (a GPU draws other values than the CPU).
// Linear weights N(0, 1/in), norms 1, biases 0. Each layer (and the embedding, the head) has its
// own generator seeded from `seed`, so a pipeline stage (opt.layer_begin/layer_end) draws only its
// own tensors, and they equal the whole model's.
std::unique_ptr<Model> random_model(const std::string& config_json, const LoadOptions& opt,
                                    std::uint64_t seed = 20251204);

}  // namespace sink
