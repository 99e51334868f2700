// Shared by the forward-parts and stage-load tests: every value the hook points see, recorded,
// and hook sets that send the layers through each attention path.
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "sink/model/model.hpp"
#include "sink/ssp/ssp.hpp"

namespace sink::test {

inline std::string fixture(const std::string& name) {
  const char* f = std::getenv("SINK_FIXTURES");
  return (std::filesystem::path(f ? f : "build/release/fixtures") / "tiny" / name).string();
}

// Every value the hook points see, by hook name (and query chunk).
struct Recorder {
  std::map<std::string, at::Tensor> seen;
  // hook_pattern only where asked: a pattern hook makes every row of its layer explicit.
  void add_all(Hooks& h, bool with_pattern) {
    for (int k = 0; k < static_cast<int>(Hook::kCount); ++k) {
      const auto hook = static_cast<Hook>(k);
      if (hook == Hook::Pattern && !with_pattern) continue;
      h.add(hook, [this, hook](at::Tensor& v, const HookCtx& c) {
        std::string key = hook_name(hook, c.layer) + "@" + std::to_string(c.q_begin);
        if (c.entropy) seen[key + ".entropy"] = c.entropy->clone();
        if (c.sink_mass) seen[key + ".sink_mass"] = c.sink_mass->clone();
        seen[key] = v.clone();
      });
    }
  }
};

// Which attention paths the hooks send the layers through.
enum class Paths { Pattern, Statistics, SspBias, SspDrop };

inline Hooks make_hooks(const Model& m, Paths p, std::int64_t T, Recorder& r) {
  Hooks h;
  const auto& s = m.spec();
  if (p == Paths::Pattern) h.set_pattern_rows(T / 2);  // rows below T/2 explicit, the rest fused
  if (p == Paths::Statistics) h.set_attn_stats(T, 8);
  if (p == Paths::SspBias || p == Paths::SspDrop) {
    SinkBias b;
    b.patched.assign(s.n_layers, true);
    auto g = at::make_generator<at::CPUGeneratorImpl>(7);
    b.mu = at::randn({s.n_layers, s.d_model}, g);
    b.mu_head = at::randn({s.n_layers, s.n_heads, s.d_model}, g);
    b.alpha_bar = at::rand({s.n_layers, s.n_heads}, g);
    install_ssp(m, b, p == Paths::SspBias ? SspMode::SspBias : SspMode::SspDrop, h);
  }
  r.add_all(h, p == Paths::Pattern);
  return h;
}

}  // namespace sink::test
