// Private to src/model: what a family file provides, and the helpers it uses.
// Each family is one file (family_*.cpp) with two parts, as in llama.cpp:
// read its hyper-parameters from config.json, and take its tensors by HF name.
#pragma once

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sink/model/model.hpp"
#include "sink/model/weight_source.hpp"
#include "sink/util/error.hpp"

namespace sink::detail {

using json = nlohmann::json;

// Typed access to config keys; errors name the key and the file.
struct Cfg {
  const json& j;
  const std::string& src;

  InputError err(const std::string& key, const std::string& what) const {
    return InputError(src, "key '" + key + "': " + what);
  }
  bool has(const std::string& k) const { return j.contains(k) && !j[k].is_null(); }
  std::int64_t i(const std::string& k) const;
  std::int64_t i(const std::string& k, std::int64_t def) const { return has(k) ? i(k) : def; }
  double f(const std::string& k) const;
  double f(const std::string& k, double def) const { return has(k) ? f(k) : def; }
  bool b(const std::string& k, bool def) const;
  std::string s(const std::string& k, const std::string& def) const;
  int pos(const std::string& k) const;  // a positive integer below 2^24
  std::optional<int> token_id(const std::string& k) const;
};

// Shared config pieces.
void read_common(const Cfg& c, ModelSpec& s);  // sizes, heads, head_dim, vocab, tie, bos/eos
RopeSpec read_rope(const Cfg& c, double default_theta);
// One RoPE parameter object `p` (null: the default type) found under `pkey`, base `theta`
// unless it sets its own rope_theta; used for Gemma 3's per-layer-type entries.
RopeSpec read_rope_params(const Cfg& c, const json* p, const std::string& pkey, double theta);
void read_layer_types(const Cfg& c, ModelSpec& s, int window);
void check_activation(const Cfg& c, const std::string& key, const std::string& want);
// Every number of a finished spec in its range (finite, positive where it must be, ...).
void check_ranges(const Cfg& c, const ModelSpec& s);

// Takes one tensor by HF name: checks presence, shape and finiteness, converts
// to the compute dtype and device.
// A pipeline stage takes only its layers [layer_begin, layer_end), the embedding when it is the
// first stage and the final norm and head when it is the last: no other tensor is read.
struct Taker {
  const WeightSource& src;
  at::ScalarType dt;
  at::Device dev;
  int layer_begin = 0, layer_end = 0;
  bool embedding = true, head = true;
  at::Tensor operator()(const std::string& name, std::vector<std::int64_t> shape, bool optional = false) const;
  // As stored (for tensors that are not floats, e.g. MXFP4 blocks), shape-checked.
  at::Tensor raw(const std::string& name, std::vector<std::int64_t> shape) const;
  // A copy of borrowed (memory-mapped) bytes; a tensor of the loader's own is moved as it is
  // when it already has the dtype and device (a second 0.6 GiB buffer for a large embedding).
  at::Tensor convert(const at::Tensor& t, bool own = false) const {
    return t.to(dev, dt, false, !own && src.borrows()).contiguous();
  }
};

// opt.layer_begin/layer_end resolved against n_layers (−1 = n_layers); an InputError naming
// `where` unless it is a non-empty part of [0, n_layers).
std::pair<int, int> stage_layer_range(const LoadOptions& opt, int n_layers, const std::string& where);

// Pieces of the tables that several families share (HF's Llama naming).
// tok_embd (first stage), model.norm and lm_head or the tied embedding (last stage).
void take_llama_embeddings(const ModelSpec& s, const Taker& take, Weights& w);
// self_attn.{q,k,v,o}_proj weights, with the biases the spec asks for (o's with o_bias).
void take_llama_attention(const std::string& prefix, const ModelSpec& s, const Taker& take, LayerWeights& L);
// The embedding and head of a family whose names are `embd`, `norm` (+ `norm_b` when not empty) and
// `head` (read only when untied): each stage takes its part; a tied head on a single stage aliases.
void take_ends(const ModelSpec& s, const Taker& take, Weights& w, const std::string& embd, const std::string& norm,
               const std::string& norm_b, const std::string& head);

// One entry per family: its config reader and its weight table.
void read_llama_like(const Cfg& c, ModelSpec& s, const std::string& model_type);
Weights take_llama_like(const ModelSpec& s, const Taker& take);
void read_gemma2(const Cfg& c, ModelSpec& s);
Weights take_gemma2(const ModelSpec& s, const Taker& take);
void read_gemma3(const Cfg& c, ModelSpec& s);
Weights take_gemma3(const ModelSpec& s, const Taker& take);
void read_phi3(const Cfg& c, ModelSpec& s);
Weights take_phi3(const ModelSpec& s, const Taker& take);
void read_gpt_neox(const Cfg& c, ModelSpec& s);
Weights take_gpt_neox(const ModelSpec& s, const Taker& take);
void read_gpt_oss(const Cfg& c, ModelSpec& s);
Weights take_gpt_oss(const ModelSpec& s, const Taker& take);

// MXFP4 (E2M1 nibbles, blocks of 32 sharing a power-of-two scale) → float32,
// exactly as transformers' integrations/mxfp4.py: blocks [..., G, 16] u8,
// scales [..., G] u8 (biased by 127) → [..., G*32], low nibble first.
at::Tensor dequantize_mxfp4(const at::Tensor& blocks, const at::Tensor& scales);

}  // namespace sink::detail
