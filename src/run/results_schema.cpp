// results.h5's self-description (see include/sink/run/results_schema.hpp and
// docs/results.md). The table below is the one place that names each dataset's
// dimensions and says what it holds; a dataset missing from it still gets
// dimensions (named after it), so a new dataset never makes the file unreadable
// for netCDF readers.
#include "sink/run/results_schema.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

#include "sink/run/partial.hpp"
#include "sink/run/results.hpp"
#include "sink/store/h5.hpp"
#include "sink/util/log.hpp"

namespace sink {
namespace {

struct Entry {
  const char* path;  // "ssp/*/nll": * is one path segment (a mode)
  std::vector<const char*> dims;
  const char* long_name;
  const char* units;   // "" where a unit makes no sense (ids, indices)
  const char* symbol;  // docs/metrics.md's, or ""
};

// clang-format off
const std::vector<Entry> kTable = {
  {"docs/id", {"doc"}, "document id from the eval set", "", ""},
  {"docs/n_tokens", {"doc"}, "tokens after the sink policy and truncation", "tokens", "T"},
  {"docs/truncated", {"doc"}, "1 if the document was cut at max_total_tokens", "1", ""},
  {"docs/token_ids", {"doc", "position"}, "token id at position i (the first P positions; -1 past the document)", "", ""},
  {"docs/tokens", {"doc", "position"}, "token at position i decoded alone (empty past the document)", "", ""},
  {"basic/sink_score", {"doc", "layer", "head"}, "sink score: mean over s < i < T_c of A[i,s]", "1", "α"},
  {"basic/sink_score_t64", {"doc", "layer", "head"}, "Gu et al.'s sink score: mean over s <= i < 64 of A[i,s]", "1", ""},
  {"basic/entropy", {"doc", "layer", "head"}, "attention entropy: mean over 0 < i < T_c of -sum_j A[i,j] log A[i,j]", "nats", ""},
  {"basic/entropy_norm", {"doc", "layer", "head"}, "attention entropy of row i divided by log(i+1), mean over 0 < i < T_c", "1", ""},
  {"basic/token_sink_score", {"doc", "layer", "head", "key"}, "token sink score of key j < S: mean over j <= i < T_c of A[i,j]", "1", ""},
  {"basic/learned_sink_mass", {"doc", "layer", "head"}, "mean over s < i < T_c of the mass on the learned sink", "1", ""},
  {"basic/attention_map", {"shown_layer", "head", "query", "key"}, "A[i,j] for i,j < S, mean over documents", "1", "A"},
  {"basic/top_key_position", {"doc", "layer", "head", "top"}, "the k keys j < T_c with the most attention mass m[j] = mean over s < i < T_c of A[i,j], largest first (-1: T_c < k)", "", ""},
  {"basic/top_key_mass", {"doc", "layer", "head", "top"}, "their attention mass m[j] = mean over s < i < T_c of A[i,j] (for j = s: α)", "1", ""},
  {"basic/doc_attention_map", {"shown_doc", "shown_layer", "head", "query", "key"}, "A[i,j] for i,j < S of one document (docs_to_show)", "1", "A"},
  {"basic/shown_doc_index", {"shown_doc"}, "index along doc of each document of docs_to_show", "", ""},
  {"norms/attn_out", {"doc", "layer", "position"}, "norm of the attention block output (o_proj, before Gemma's post-norm)", "activation", ""},
  {"norms/mlp_out", {"doc", "layer", "position"}, "norm of the MLP output as added to the residual", "activation", ""},
  {"norms/hidden", {"doc", "hidden_state", "position"}, "norm of the hidden state", "activation", ""},
  {"norms/massive_index", {"doc", "hidden_state", "massive_rank"}, "dimensions of the K largest |h| at the sink position", "", ""},
  {"norms/massive_value", {"doc", "hidden_state", "massive_rank"}, "their values h[dim] at the sink position", "activation", ""},
  {"values/sink_out_norm", {"doc", "layer", "head"}, "mean norm of c[l,h,i] = A[i,s] v_s W_O^h", "activation", ""},
  {"values/update_norm", {"doc", "layer", "head"}, "mean norm of u[l,h,i] = sum_j A[i,j] v_j W_O^h", "activation", ""},
  {"values/sink_share", {"doc", "layer", "head"}, "mean of |c| / |u|", "1", ""},
  {"values/update_minus_sink_norm", {"doc", "layer", "head"}, "mean norm of u - c", "activation", ""},
  {"values/v_sink_norm", {"doc", "layer", "head"}, "norm of v_s (KV heads expanded)", "activation", ""},
  {"values/v_other_norm", {"doc", "layer", "head"}, "mean norm of v_j, j != s, j < T_c", "activation", ""},
  {"values/k_sink_norm", {"doc", "layer", "head"}, "norm of k_s (after RoPE)", "activation", ""},
  {"values/k_other_norm", {"doc", "layer", "head"}, "mean norm of k_j, j != s, j < T_c", "activation", ""},
  {"summary/sink_score_mean", {"layer", "head"}, "sink score α averaged over documents", "1", "α"},
  {"summary/sink_score_t64_mean", {"layer", "head"}, "Gu et al.'s sink score averaged over documents", "1", ""},
  {"summary/sink_rate_gu_by_layer", {"layer"},
   "Gu et al.'s sink rate per layer: per document, heads with score > epsilon; mean over documents and heads", "1", ""},
  {"summary/sink_rate_by_layer", {"layer"}, "fraction of the layer's heads whose document-mean alpha exceeds epsilon",
   "1", ""},
  {"summary/sink_rate_t64_of_mean_by_layer", {"layer"},
   "fraction of the layer's heads whose document-mean Gu et al. score exceeds epsilon", "1", ""},
  {"summary/geometry/count", {"layer", "vector_set"}, "positions summed", "positions", ""},
  {"summary/geometry/mean_cos_to_mean", {"layer", "vector_set"}, "mean cosine of the vectors to their mean direction", "1", ""},
  {"summary/geometry/pc1_share", {"layer", "vector_set"}, "share of variance on the first principal component", "1", ""},
  {"summary/geometry/var_over_mean_sq", {"layer", "vector_set"}, "trace(cov) / |mean|^2", "1", ""},
  {"summary/geometry/mean_norm", {"layer", "vector_set"}, "mean norm of the vectors", "activation", ""},
  {"summary/geometry/norm_ratio", {"layer"}, "mean |C| / mean |R|", "1", ""},
  {"summary/geometry/mean_direction", {"layer", "vector_set", "model_dim"}, "unit mean direction", "1", ""},
  {"ssp/mu", {"layer", "model_dim"}, "mean sink vector of layer l over the calibration documents", "activation", "μ[l]"},
  {"ssp/mu_head", {"layer", "head", "model_dim"}, "mean sink vector of head h of layer l", "activation", "μ[l,h]"},
  {"ssp/alpha_bar", {"layer", "head"}, "mean sink mass A[i,s] on the calibration documents", "1", "ᾱ[l,h]"},
  {"ssp/calibration_ids", {"calibration_doc"}, "calibration document ids", "", ""},
  {"ssp/window_mu/*/mu", {"layer", "model_dim"}, "mean sink vector of layer l under the evaluation window W (* = wW), over the calibration rows the window hides the sink from", "activation", "μ_W[l]"},
  {"ssp/window_mu/*/mu_head", {"layer", "head", "model_dim"}, "mean sink vector of head h of layer l under the evaluation window W", "activation", "μ_W[l,h]"},
  {"ssp/window_mu/*/alpha_bar", {"layer", "head"}, "mean sink mass A[i,s] under the evaluation window W (sink kept), over the rows it hides the sink from", "1", "ᾱ_W[l,h]"},
  {"ssp/*/nll", {"doc"}, "mean token NLL per document", "nats", ""},
  {"ssp/*/nll_sum", {"doc"}, "summed token NLL per document", "nats", ""},
  {"ssp/*/n_scored", {"doc"}, "tokens scored (positions s+2 ... T-1)", "tokens", ""},
  {"ssp/*/kl", {"doc"}, "mean over scored positions of KL(p_orig || p_mode)", "nats", ""},
  {"ssp/*/resid_rel_l2", {"hidden_state"}, "mean over documents and positions i > s of |h' - h| / |h|", "1", ""},
  {"ssp/*/resid_rel_l2_doc", {"doc", "hidden_state"}, "mean over positions i > s of |h' - h| / |h|, per document", "1", ""},
  {"ssp/*/resid_cos", {"hidden_state"}, "mean over documents and positions i > s of cos(h', h)", "1", ""},
  {"ssp/*/resid_cos_doc", {"doc", "hidden_state"}, "mean over positions i > s of cos(h', h), per document", "1", ""},
};

const std::map<std::string, const char*> kDimNames = {
  {"doc", "document (coordinate: its id in the eval set)"},
  {"layer", "layer l (0-based)"},
  {"head", "query head h"},
  {"hidden_state", "hidden state (HF convention: 0 = the embeddings, l + 1 = block l's output, the last after the final norm)"},
  {"position", "token position i"},
  {"query", "query position i"},
  {"key", "key position j"},
  {"shown_layer", "layer of layers_to_show (coordinate: the layer index)"},
  {"massive_rank", "rank by |h| (0 = largest)"},
  {"top", "rank by attention mass (0 = largest)"},
  {"vector_set", "sink vectors C[l,i], or the control R[l,i] = attention output - C[l,i]"},
  {"model_dim", "residual-stream dimension"},
  {"calibration_doc", "calibration document"},
  {"shown_doc", "document of docs_to_show (coordinate: its id)"},
};
// clang-format on

bool matches(const std::string& pattern, const std::string& path) {
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    std::size_t a = 0;
    for (std::size_t b; (b = s.find('/', a)) != std::string::npos; a = b + 1) out.push_back(s.substr(a, b - a));
    out.push_back(s.substr(a));
    return out;
  };
  auto p = split(pattern), q = split(path);
  if (p.size() != q.size()) return false;
  for (std::size_t k = 0; k < p.size(); ++k)
    if (p[k] != "*" && p[k] != q[k]) return false;
  return true;
}

const Entry* find_entry(const std::string& path) {
  for (const auto& e : kTable)
    if (matches(e.path, path)) return &e;
  return nullptr;
}

// The names docs/ must not reuse for the eval set's fields.
const std::set<std::string> kDocNames = {"id", "n_tokens", "truncated", "token_ids", "tokens"};

std::string field_dataset(const std::string& key) {
  std::string n = key;
  for (auto& c : n)
    if (c == '/' || c == '.' || static_cast<unsigned char>(c) < 32) c = '_';
  if (n.empty() || kDocNames.count(n)) n = "field_" + n;
  return "docs/" + n;
}

std::vector<std::int64_t> doc_indices_to_show(const RunOutcome& o) {
  std::vector<std::int64_t> out;
  const auto N = static_cast<std::int64_t>(o.docs.size());
  if (o.rc.docs_to_show >= 0) {
    for (std::int64_t i = 0; i < std::min(N, o.rc.docs_to_show); ++i) out.push_back(i);
  } else {
    for (const auto& id : o.rc.docs_to_show_ids)
      for (std::int64_t i = 0; i < N; ++i)
        if (o.docs[i].id == id) out.push_back(i);
  }
  return out;
}

}  // namespace

void write_doc_tokens(const h5::Group& g, const RunOutcome& o, std::int64_t lo, std::int64_t hi) {
  const auto N = static_cast<std::int64_t>(o.docs.size());
  const std::int64_t P = o.rc.max_tokens_to_calc;
  std::vector<std::int32_t> ids(static_cast<std::size_t>((hi - lo) * P), -1);
  std::size_t width = 1;
  for (std::int64_t i = 0; i < N; ++i)
    for (const auto& t : o.docs[i].tokens) width = std::max(width, t.size());
  for (std::int64_t i = lo; i < hi; ++i)
    for (std::int64_t j = 0; j < std::min<std::int64_t>(P, static_cast<std::int64_t>(o.docs[i].ids.size())); ++j)
      ids[(i - lo) * P + j] = static_cast<std::int32_t>(o.docs[i].ids[j]);
  g.create("docs/token_ids", h5::Type::I32, {N, P}).write_rows(lo, hi - lo, ids.data());
  // The decoded tokens where they stay small beside the rest (every rank decides alike).
  if (double(N) * double(P) * double(width) <= 256.0 * (1 << 20)) {
    std::vector<std::string> toks;
    toks.reserve(static_cast<std::size_t>((hi - lo) * P));
    for (std::int64_t i = lo; i < hi; ++i)
      for (std::int64_t j = 0; j < P; ++j)
        toks.push_back(j < static_cast<std::int64_t>(o.docs[i].tokens.size()) ? o.docs[i].tokens[j] : "");
    g.create_strings("docs/tokens", {N, P}, width).write_strings(lo, toks);
  } else {
    log::warn(o.rc.name + ": docs/tokens left out (N x P x " + std::to_string(width) +
              " bytes > 256 MiB); docs/token_ids has the ids");
  }
  // The eval set's other fields, in the order they first appear; "" where a document lacks one.
  std::vector<std::string> keys;
  for (const auto& d : o.docs)
    for (const auto& [k, v] : d.fields)
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  std::set<std::string> used;
  for (const auto& k : keys) {
    std::string name = field_dataset(k);
    while (!used.insert(name).second) name += "_";
    std::vector<std::string> v;
    std::size_t w = 1;
    for (std::int64_t i = 0; i < N; ++i) {
      std::string x;
      for (const auto& [fk, fv] : o.docs[i].fields)
        if (fk == k) x = fv;
      w = std::max(w, x.size());
      if (i >= lo && i < hi) v.push_back(std::move(x));
    }
    auto ds = g.create_strings(name, N, w);
    ds.write_strings(lo, v);
    ds.attr("long_name", "field '" + k + "' of the eval set (non-string values as JSON)");
  }
}

void write_doc_maps(const h5::Group& g, const RunOutcome& o, const PartialStore& store) {
  const auto idx = doc_indices_to_show(o);
  if (idx.empty()) return;
  const DocArrays first = store.read_doc(idx[0]);
  if (!first.count("basic/attention_map")) return;
  auto shape = first.at("basic/attention_map").sizes().vec();  // [V, H, S, S]
  shape.insert(shape.begin(), static_cast<std::int64_t>(idx.size()));
  auto ds = g.create("basic/doc_attention_map", h5::Type::F32, shape);
  auto ix = g.create("basic/shown_doc_index", h5::Type::I64, {static_cast<std::int64_t>(idx.size())});
  if (g.parallel() && g.file_rank() != 0) return;  // rank 0 writes (write_all)
  std::vector<at::Tensor> maps;
  for (auto i : idx) maps.push_back(store.read_doc(i).at("basic/attention_map").unsqueeze(0));
  auto all = at::cat(maps).contiguous();
  ds.write_all(all.data_ptr());
  ix.write_all(idx.data());
}

void annotate_results(const std::string& path) {
  auto f = h5::File::open_rw(path);
  const auto runs = f.attr_string("runs").value_or("");
  std::vector<std::string> names;
  for (std::size_t a = 0; a <= runs.size();) {
    auto b = runs.find(',', a);
    if (b == std::string::npos) b = runs.size();
    if (b > a) names.push_back(runs.substr(a, b - a));
    a = b + 1;
  }
  for (const auto& run : names) {
    auto g = f.group(run);
    const auto datasets = g.datasets();
    std::vector<std::string> doc_ids;
    if (g.exists("docs/id")) doc_ids = g.read_strings("docs/id");
    std::map<std::string, h5::Dataset> scales;
    // The scale of dimension `name` with `n` entries, made on first use (in the run group, where
    // netCDF readers find it for every dataset below).
    auto scale = [&](std::string name, std::int64_t n) -> const h5::Dataset& {
      if (auto it = scales.find(name); it != scales.end()) {
        if (it->second.dims()[0] == n) return it->second;
        name += "_" + std::to_string(n);  // same name, other length: never in our table; keep both
        if (auto jt = scales.find(name); jt != scales.end()) return jt->second;
      }
      while (g.exists(name)) name += "_";
      std::vector<std::string> labels;
      std::vector<std::int64_t> values(static_cast<std::size_t>(n));
      for (std::int64_t k = 0; k < n; ++k) values[k] = k;
      if (name == "doc" && static_cast<std::int64_t>(doc_ids.size()) == n) labels = doc_ids;
      if (name == "vector_set" && n == 2) labels = {"sink C", "control R"};
      if (name == "shown_layer")
        if (auto v = g.attr_ints("layers_to_show"); v && static_cast<std::int64_t>(v->size()) == n) values = *v;
      if (name == "shown_doc" && g.exists("basic/shown_doc_index")) {
        auto ix = g.open("basic/shown_doc_index");
        std::vector<std::int64_t> i(static_cast<std::size_t>(n));
        ix.read_all(i.data());
        for (auto x : i) labels.push_back(x >= 0 && x < static_cast<std::int64_t>(doc_ids.size()) ? doc_ids[x] : "");
      }
      h5::Dataset d;
      if (!labels.empty()) {
        g.write_strings(name, labels);
        d = g.open(name);
        d.attr("_Encoding", std::string("utf-8"));
      } else {
        d = g.create(name, h5::Type::I64, {n});
        if (n > 0) d.write_all(values.data());  // an empty dataset has no storage to write
      }
      d.make_scale(name);
      auto dn = kDimNames.find(name);
      d.attr("long_name", std::string(dn != kDimNames.end() ? dn->second : "index"));
      return scales.emplace(name, std::move(d)).first->second;
    };
    for (const auto& p : datasets) {
      auto ds = g.open(p);
      if (ds.is_scale()) continue;
      const auto dims = ds.dims();
      const Entry* e = find_entry(p);
      const bool docs_field = !e && p.rfind("docs/", 0) == 0 && dims.size() == 1;
      if (e && e->dims.size() != dims.size()) e = nullptr;  // a table out of date: still label it
      const std::string leaf = p.substr(p.rfind('/') + 1);
      for (std::size_t k = 0; k < dims.size(); ++k) {
        std::string name = e ? e->dims[k] : docs_field ? "doc" : leaf + "_dim" + std::to_string(k);
        if (!e && !docs_field && k == 0 && dims[0] == static_cast<std::int64_t>(doc_ids.size()) &&
            p.find("doc") != std::string::npos)
          name = "doc";
        ds.attach_scale(scale(name, dims[k]), static_cast<unsigned>(k));
      }
      if (e) {
        ds.attr("long_name", std::string(e->long_name));
        if (*e->units) ds.attr("units", std::string(e->units));
        if (*e->symbol) ds.attr("symbol", std::string(e->symbol));
      }
      if (ds.type() == h5::Type::Str) ds.attr("_Encoding", std::string("utf-8"));
    }
  }
  f.close();
}

}  // namespace sink
