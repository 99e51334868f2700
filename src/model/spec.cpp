// config.json → ModelSpec: shared readers and the dispatch to each family's
// reader (family_*.cpp). HF defaults follow the installed transformers'
// configuration_*.py.
#include "sink/model/spec.hpp"

#include <cmath>

#include "family.hpp"
#include "sink/util/mapped_file.hpp"

namespace sink {

const char* family_name(Family f) {
  switch (f) {
    case Family::Llama:
      return "llama";
    case Family::Mistral:
      return "mistral";
    case Family::Qwen2:
      return "qwen2";
    case Family::Qwen3:
      return "qwen3";
    case Family::Gemma2:
      return "gemma2";
    case Family::Gemma3:
      return "gemma3";
    case Family::Phi3:
      return "phi3";
    case Family::GPTNeoX:
      return "gpt_neox";
    case Family::GPTOSS:
      return "gpt_oss";
  }
  return "?";
}

namespace detail {

std::int64_t Cfg::i(const std::string& k) const {
  if (!has(k)) throw err(k, "missing");
  if (!j[k].is_number_integer()) throw err(k, "expected an integer");
  return j[k].get<std::int64_t>();
}
double Cfg::f(const std::string& k) const {
  if (!has(k)) throw err(k, "missing");
  if (!j[k].is_number()) throw err(k, "expected a number");
  return j[k].get<double>();
}
bool Cfg::b(const std::string& k, bool def) const {
  if (!has(k)) return def;
  if (!j[k].is_boolean()) throw err(k, "expected true or false");
  return j[k].get<bool>();
}
std::string Cfg::s(const std::string& k, const std::string& def) const {
  if (!has(k)) return def;
  if (!j[k].is_string()) throw err(k, "expected a string");
  return j[k].get<std::string>();
}
int Cfg::pos(const std::string& k) const {
  auto v = i(k);
  if (v <= 0 || v > (1 << 24)) throw err(k, "must be a positive integer below 2^24, got " + std::to_string(v));
  return static_cast<int>(v);
}
std::optional<int> Cfg::token_id(const std::string& k) const {
  if (!has(k)) return std::nullopt;
  const json& v = j[k].is_array() ? (j[k].empty() ? j[k] : j[k][0]) : j[k];  // eos_token_id may be a list: the first
  if (j[k].is_array() && j[k].empty()) return std::nullopt;
  if (!v.is_number_integer()) throw err(k, "expected a token id");
  // Read wide, then range-checked: get<int> would wrap 2^32 + 1 to 1.
  const auto id =
      v.is_number_unsigned() && v.get<std::uint64_t>() > (std::uint64_t(1) << 62) ? -1 : v.get<std::int64_t>();
  if (id < 0 || id >= (std::int64_t(1) << 24)) throw err(k, "token id " + v.dump() + " is out of range");
  return static_cast<int>(id);
}

RopeSpec read_rope(const Cfg& c, double default_theta) {
  const json* p = nullptr;
  std::string pkey;
  if (c.has("rope_parameters")) {
    p = &c.j["rope_parameters"];
    pkey = "rope_parameters";
  } else if (c.has("rope_scaling")) {
    p = &c.j["rope_scaling"];
    pkey = "rope_scaling";
  }
  return read_rope_params(c, p, pkey, c.f("rope_theta", default_theta));
}

RopeSpec read_rope_params(const Cfg& c, const json* p, const std::string& pkey, double theta) {
  RopeSpec r;
  r.theta = theta;
  if (p) {
    if (!p->is_object()) throw c.err(pkey, "expected an object");
    Cfg rc{*p, c.src};
    r.theta = rc.f("rope_theta", r.theta);
    const std::string type = rc.s("rope_type", rc.s("type", "default"));
    if (type == "default") {
    } else if (type == "linear") {  // positions divided by factor (Gemma 3's larger configs)
      r.factor = rc.f("factor");
    } else if (type == "llama3") {
      r.factor = rc.f("factor");
      r.low_freq_factor = rc.f("low_freq_factor");
      r.high_freq_factor = rc.f("high_freq_factor");
      r.original_max_positions = rc.i("original_max_position_embeddings");
    } else if (type == "yarn") {
      r.original_max_positions = rc.i("original_max_position_embeddings");
      r.factor =
          rc.has("factor") ? rc.f("factor") : double(c.i("max_position_embeddings")) / double(r.original_max_positions);
      r.beta_fast = rc.has("beta_fast") && rc.f("beta_fast") != 0 ? rc.f("beta_fast") : 32.0;
      r.beta_slow = rc.has("beta_slow") && rc.f("beta_slow") != 0 ? rc.f("beta_slow") : 1.0;
      if (rc.has("attention_factor")) r.attention_factor = rc.f("attention_factor");
      if (rc.has("mscale")) r.mscale = rc.f("mscale");
      if (rc.has("mscale_all_dim")) r.mscale_all_dim = rc.f("mscale_all_dim");
      r.truncate = rc.b("truncate", true);
      if (r.original_max_positions <= 0) throw c.err(pkey + ".original_max_position_embeddings", "must be positive");
    } else {
      throw c.err(pkey + ".rope_type",
                  "unsupported RoPE scaling '" + type + "' (supported: default, linear, llama3, yarn)");
    }
    r.type = type;
    if (rc.has("partial_rotary_factor")) r.partial_rotary_factor = rc.f("partial_rotary_factor");
  }
  if (c.has("partial_rotary_factor")) r.partial_rotary_factor = c.f("partial_rotary_factor");
  if (!(r.theta > 0)) throw c.err("rope_theta", "must be positive");
  if (!(r.partial_rotary_factor > 0 && r.partial_rotary_factor <= 1))
    throw c.err("partial_rotary_factor", "must be in (0, 1]");
  if (r.type != "default" && !(r.factor > 0)) throw c.err(pkey + ".factor", "must be positive");
  return r;
}

void read_common(const Cfg& c, ModelSpec& s) {
  s.n_layers = c.pos("num_hidden_layers");
  s.d_model = c.pos("hidden_size");
  s.n_heads = c.pos("num_attention_heads");
  s.n_kv_heads = c.has("num_key_value_heads") ? c.pos("num_key_value_heads") : s.n_heads;
  s.d_ff = c.pos("intermediate_size");
  s.vocab = c.pos("vocab_size");
  s.max_positions = c.i("max_position_embeddings", 2048);
  if (c.has("head_dim")) {
    s.head_dim = c.pos("head_dim");
  } else {
    if (s.d_model % s.n_heads != 0)
      throw c.err("num_attention_heads", "hidden_size " + std::to_string(s.d_model) + " is not divisible by " +
                                             std::to_string(s.n_heads) + " heads (and no head_dim given)");
    s.head_dim = s.d_model / s.n_heads;
  }
  if (s.n_heads % s.n_kv_heads != 0)
    throw c.err("num_key_value_heads",
                std::to_string(s.n_kv_heads) + " does not divide num_attention_heads " + std::to_string(s.n_heads));
  s.tied_embeddings = c.b("tie_word_embeddings", false);
  s.bos_id = c.token_id("bos_token_id");
  s.eos_id = c.token_id("eos_token_id");
  s.sliding_window.assign(s.n_layers, 0);
}

void finish_rope(const Cfg& c, ModelSpec& s) {
  s.rope.rotary_dim = static_cast<int>(s.head_dim * s.rope.partial_rotary_factor);
  if (s.rope.rotary_dim <= 0 || s.rope.rotary_dim % 2 != 0)
    throw c.err("partial_rotary_factor", "gives an odd or empty rotary dimension " + std::to_string(s.rope.rotary_dim));
  if (s.rope_sliding) s.rope_sliding->rotary_dim = s.rope.rotary_dim;
}

void read_layer_types(const Cfg& c, ModelSpec& s, int window) {
  if (!c.has("layer_types")) return;
  const json& lt = c.j["layer_types"];
  if (!lt.is_array() || static_cast<int>(lt.size()) != s.n_layers)
    throw c.err("layer_types", "expected a list of num_hidden_layers (" + std::to_string(s.n_layers) + ") entries");
  for (int l = 0; l < s.n_layers; ++l) {
    if (!lt[l].is_string()) throw c.err("layer_types", "entries must be strings");
    const auto t = lt[l].get<std::string>();
    if (t == "sliding_attention") {
      if (window <= 0) throw c.err("sliding_window", "layer_types has sliding layers but no sliding_window");
      s.sliding_window[l] = window;
    } else if (t == "full_attention") {
      s.sliding_window[l] = 0;
    } else {
      throw c.err("layer_types", "unknown layer type '" + t + "'");
    }
  }
}

// The one range check of a spec's numbers, whichever file (config.json, GGUF metadata)
// and family they came from: what the forward pass divides by, takes roots or logs of,
// or indexes with. Each failure names the config key.
void check_ranges(const Cfg& c, const ModelSpec& s) {
  auto finite_pos = [&](double v, const std::string& key) {
    if (!std::isfinite(v) || !(v > 0)) throw c.err(key, "must be a positive finite number, got " + std::to_string(v));
  };
  auto finite_nonneg = [&](double v, const std::string& key) {
    if (!std::isfinite(v) || v < 0) throw c.err(key, "must be a finite number >= 0, got " + std::to_string(v));
  };
  finite_pos(s.norm_eps, s.family == Family::GPTNeoX ? "layer_norm_eps" : "rms_norm_eps");
  if (s.max_positions < 1 || s.max_positions > (std::int64_t(1) << 40))
    throw c.err("max_position_embeddings", "must be a positive integer, got " + std::to_string(s.max_positions));
  for (const RopeSpec* r : {&s.rope, s.rope_sliding ? &*s.rope_sliding : nullptr}) {
    if (!r) continue;
    finite_pos(r->theta, "rope_theta");
    finite_pos(r->factor, "rope_scaling.factor");
    if (r->type == "llama3") {
      finite_pos(r->low_freq_factor, "rope_scaling.low_freq_factor");
      finite_pos(r->high_freq_factor, "rope_scaling.high_freq_factor");
      if (!(r->high_freq_factor > r->low_freq_factor))  // HF divides by their difference
        throw c.err("rope_scaling.high_freq_factor", "must exceed low_freq_factor");
      if (r->original_max_positions < 1)
        throw c.err("rope_scaling.original_max_position_embeddings", "must be positive");
    }
    if (r->type == "yarn") {
      finite_pos(r->beta_fast, "rope_scaling.beta_fast");
      finite_pos(r->beta_slow, "rope_scaling.beta_slow");
      if (r->attention_factor) finite_pos(*r->attention_factor, "rope_scaling.attention_factor");
      if (r->mscale) finite_nonneg(*r->mscale, "rope_scaling.mscale");
      if (r->mscale_all_dim) finite_nonneg(*r->mscale_all_dim, "rope_scaling.mscale_all_dim");
    }
  }
  finite_pos(s.attn_scale, "query_pre_attn_scalar");
  finite_nonneg(s.attn_softcap, "attn_logit_softcapping");
  finite_nonneg(s.final_softcap, "final_logit_softcapping");
  if (s.family == Family::GPTOSS) finite_pos(s.swiglu_limit, "swiglu_limit");
  if (static_cast<int>(s.sliding_window.size()) != s.n_layers)
    throw c.err("sliding_window", "one window per layer expected");
  for (int w : s.sliding_window)
    if (w < 0) throw c.err("sliding_window", "must be at least 1, got " + std::to_string(w));
  if (s.n_kv_heads < 1 || s.n_heads % s.n_kv_heads != 0)
    throw c.err("num_key_value_heads", "must divide num_attention_heads");
  if (s.n_experts > 0 && (s.top_k < 1 || s.top_k > s.n_experts))
    throw c.err("num_experts_per_tok", "must be in [1, num_local_experts]");
}

void check_activation(const Cfg& c, const std::string& key, const std::string& want) {
  const auto act = c.s(key, want);
  if (act != want) throw c.err(key, "unsupported activation '" + act + "' (this family uses '" + want + "')");
}

}  // namespace detail

ModelSpec spec_from_hf_config_text(const std::string& text, const std::string& src) {
  using namespace detail;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(src, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw InputError(src, "config is not a JSON object");
  Cfg c{j, src};
  ModelSpec s;
  s.source = src;
  const std::string model_type = c.s("model_type", "");
  if (c.has("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    s.architecture = j["architectures"][0].get<std::string>();
  if (model_type == "llama" || model_type == "mistral" || model_type == "qwen2" || model_type == "qwen3") {
    read_llama_like(c, s, model_type);
  } else if (model_type == "gemma2") {
    read_gemma2(c, s);
  } else if (model_type == "gemma3_text") {
    read_gemma3(c, s);
  } else if (model_type == "gemma3") {
    throw c.err("model_type",
                "'gemma3' is the multimodal Gemma3ForConditionalGeneration; sink reads the text model "
                "(model_type gemma3_text, Gemma3ForCausalLM)");
  } else if (model_type == "phi3") {
    read_phi3(c, s);
  } else if (model_type == "gpt_neox") {
    read_gpt_neox(c, s);
  } else if (model_type == "gpt_oss") {
    read_gpt_oss(c, s);
  } else if (model_type.empty()) {
    throw c.err("model_type", "missing");
  } else {
    throw c.err("model_type",
                "unsupported architecture '" + model_type +
                    "' (supported: llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3, gpt_neox, gpt_oss)");
  }
  finish_rope(c, s);
  if (s.attn_scale == 0.0) s.attn_scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  check_ranges(c, s);
  return s;
}

ModelSpec spec_from_hf_config(const std::string& path) { return spec_from_hf_config_text(read_text_file(path), path); }

}  // namespace sink
