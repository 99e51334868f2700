// The sink-run pipeline (see include/sink/run/run.hpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "sink/config/config.hpp"
#include "sink/config/eval_set.hpp"
#include "sink/dist/comm.hpp"
#include "sink/dist/transport.hpp"
#include "sink/io/gguf.hpp"
#include "sink/metrics/observe.hpp"
#include "sink/model/model.hpp"
#include "sink/model/random.hpp"
#include "sink/model/weight_source.hpp"
#include "sink/run/device.hpp"
#include "sink/run/documents.hpp"
#include "sink/run/out_lock.hpp"
#include "sink/run/outdir.hpp"
#include "sink/run/partial.hpp"
#include "sink/run/rank_errors.hpp"
#include "sink/run/results.hpp"
#include "sink/run/run.hpp"
#include "sink/run/stages.hpp"
#include "sink/run/summary.hpp"
#include "sink/ssp/ssp.hpp"
#include "sink/store/h5.hpp"
#include "sink/tok/tokenizer.hpp"
#include "sink/util/error.hpp"
#include "sink/util/fault.hpp"
#include "sink/util/log.hpp"
#include "sink/util/mapped_file.hpp"

namespace sink {
namespace fs = std::filesystem;

namespace {

std::string now_iso() {
  auto t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::ostringstream o;
  o << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return o.str();
}

// Reads a model's spec without its weights (config.json, or GGUF metadata).
ModelSpec read_spec(const std::string& path) {
  if (fs::is_regular_file(path) && fs::path(path).extension() == ".gguf") return open_gguf_model(path).spec;
  const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  if (!fs::exists(dir / "config.json"))
    throw InputError(path, "no config.json here (expected an HF snapshot folder or a .gguf file)");
  return spec_from_hf_config((dir / "config.json").string());
}

// sha256 over each weight file's size and first MiB (headers and metadata live there):
// a cheap fingerprint that changes when the file does, without reading gigabytes.
std::string weights_fingerprint(const std::string& path) {
  std::vector<fs::path> files;
  if (fs::is_regular_file(path)) files.push_back(path);
  else
    for (const auto& e : fs::directory_iterator(path))
      if (e.path().extension() == ".safetensors" || e.path().filename() == "config.json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string acc;
  for (const auto& f : files) {
    MappedFile m(f.string());
    acc += f.filename().string() + ":" + std::to_string(m.size()) + ":";
    acc.append(reinterpret_cast<const char*>(m.data()), std::min<std::size_t>(m.size(), 1 << 20));
  }
  return sha256_hex(acc.data(), acc.size());
}

std::string tokenizer_file(const std::string& model_path) {
  if (fs::is_regular_file(model_path)) return model_path;
  for (const char* n : {"tokenizer.json", "tokenizer.model"})
    if (fs::exists(fs::path(model_path) / n)) return (fs::path(model_path) / n).string();
  return "";
}

// Runs `fn` on rank 0 only; an InputError (or ResourceError) there becomes the same error on every rank.
void on_root_checked(dist::Comm& world, const std::function<void()>& fn) {
  std::string err;
  int kind = 0;  // 1 input, 2 resource
  if (world.rank() == 0) {
    try {
      fn();
    } catch (const InputError& e) {
      err = e.what(), kind = 1;
    } catch (const ResourceError& e) {
      err = e.what(), kind = 2;
    } catch (const fs::filesystem_error& e) {  // e.g. OUT is a file (input), or read-only / full (resource)
      const int c = e.code().value();
      const bool machine = c == EROFS || c == ENOSPC || c == EDQUOT || c == EACCES || c == EPERM;
      err = e.path1().string() + ": " + e.code().message(), kind = machine ? 2 : 1;
    }
    if (kind && err.empty()) err = "error";
  }
  std::string msg = kind ? std::to_string(kind) + err : "";  // the kind travels as the first character
  world.bcast(msg, 0);
  if (msg.empty()) return;
  if (msg[0] == '2') throw ResourceError("", msg.substr(1), /*on_every_rank=*/true);
  throw InputError("", msg.substr(1));
}

// Progress on stderr, on one rank: a bar on a terminal, a line every ~10% or every_s seconds in logs.
class Progress {
 public:
  Progress(std::string what, std::int64_t total, bool on, double every_s = 60)
      : what_(std::move(what)),
        total_(total),
        on_(on),
        tty_(isatty(2)),
        every_s_(every_s),
        t0_(clock::now()),
        last_(t0_) {}
  void update(std::int64_t done, std::int64_t tokens) {
    if (!on_ || total_ <= 0) return;
    const auto now = clock::now();
    const double el = std::chrono::duration<double>(now - t0_).count();
    const double frac = double(done) / double(total_);
    const double eta = done > 0 ? el / frac - el : 0;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s: %lld/%lld documents, %.0f tok/s, elapsed %.0fs, ETA %.0fs", what_.c_str(),
                  (long long)done, (long long)total_, el > 0 ? tokens / el : 0.0, el, eta);
    if (tty_) {
      const int w = 24, f = static_cast<int>(frac * w);
      std::fprintf(stderr, "\r[%s%s] %s", std::string(f, '#').c_str(), std::string(w - f, '.').c_str(), buf);
      if (done >= total_) std::fprintf(stderr, "\n");
    } else if (done >= total_ || frac >= next_ || std::chrono::duration<double>(now - last_).count() >= every_s_) {
      log::info(buf);
      next_ = frac + 0.1;
      last_ = now;
    }
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string what_;
  std::int64_t total_;
  bool on_, tty_;
  double every_s_;
  clock::time_point t0_, last_;
  double next_ = 0.1;
};

struct PreparedRun {
  RunConfig rc;
  std::string model_path;
  ModelSpec spec;
  std::unique_ptr<Tokenizer> tok;
  SinkPolicy policy;
  std::vector<PreparedDoc> docs, calib;
  std::vector<std::string> calib_ids;
  std::map<std::string, std::string> hashes;
  double cost = 0;
  bool random_weights = false;  // model: random:CONFIG (model_path is CONFIG's folder)
};

// For --dry-run of a model that is not in the local HF cache: its entry in
// data/models.json names the published config.json (spec_dir) and a tokenizer.
struct RegistryEntry {
  std::string spec_dir, tokenizer;
};
std::optional<RegistryEntry> registry_lookup(const std::string& model) {
  const char* env = std::getenv("SINK_MODELS_JSON");
  const std::string path = env ? env : "data/models.json";
  if (!fs::exists(path)) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const std::exception&) {
    throw InputError(path, "not valid JSON");
  }
  for (const auto& m : j.value("models", nlohmann::json::array())) {
    const bool named =
        (m.value("hf_id", nlohmann::json()).is_string() && m["hf_id"] == model) ||
        (m.value("spec_dir", nlohmann::json()).is_string() &&
         fs::path(m["spec_dir"].get<std::string>()).lexically_normal() == fs::path(model).lexically_normal());
    if (named && m.value("spec_dir", nlohmann::json()).is_string())
      return RegistryEntry{m["spec_dir"].get<std::string>(), m.value("tokenizer", std::string())};
  }
  return std::nullopt;
}

std::map<std::string, at::Tensor> load_mu(const std::string& path, const PreparedRun& p);

PreparedRun prepare_run(const RunConfig& rc, const Config& cfg, bool dry_run) {
  PreparedRun p;
  p.rc = rc;
  std::optional<RegistryEntry> stand_in;
  if (const auto cfg_json = random_model_config(rc.model); !cfg_json.empty()) {
    // Random weights on a published shape: the tokenizer is the registry's for that folder, or one beside it.
    p.random_weights = true;
    p.model_path = fs::path(cfg_json).parent_path().string();
    stand_in = registry_lookup(p.model_path);
    if (!stand_in && tokenizer_file(p.model_path).empty())
      throw InputError(rc.model,
                       "no tokenizer for this shape: none beside its config.json and no entry with spec_dir '" +
                           p.model_path + "' in data/models.json");
  } else {
    try {
      p.model_path = resolve_model_path(rc.model);
    } catch (const InputError&) {
      if (!dry_run || !(stand_in = registry_lookup(rc.model))) throw;
      log::warn(rc.name + ": " + rc.model +
                " is not in the local HF cache; --dry-run checks it with its published config (" + stand_in->spec_dir +
                ") and tokenizer (" + stand_in->tokenizer + ")");
      p.model_path = stand_in->spec_dir;
    }
  }
  p.spec = read_spec(p.model_path);
  const int L = p.spec.n_layers;
  if (rc.stages != RunConfig::kAutoStages) check_stages(rc.stages, L, 0, cfg.path);
  // The windowed evaluation's passes and its calibration under each window run on whole models only.
  if (rc.intervention && rc.intervention->window_eval && rc.stages != 1)
    throw InputError(cfg.path, "key 'intervention.window_eval' runs with one stage only (stages: 1), not with '" +
                                   std::string(rc.stages == RunConfig::kAutoStages ? "auto" : std::to_string(rc.stages)) +
                                   "' pipeline stages");
  for (int l : rc.layers_to_show)
    if (l < 0 || l >= L)
      throw InputError(cfg.path, "key 'layers_to_show': layer " + std::to_string(l) + " out of range (model has " +
                                     std::to_string(L) + " layers)");
  p.tok = stand_in ? load_tokenizer(stand_in->tokenizer) : tokenizer_for_model(p.model_path);
  p.policy = resolve_sink_policy(rc.sink_policy, *p.tok, p.spec, cfg.path);
  auto eval = read_eval_jsonl(rc.eval_jsonl, rc.eval_field, rc.max_docs, &p.hashes["eval_sha256"]);
  if (eval.empty()) throw InputError(rc.eval_jsonl, "no documents");
  p.docs = prepare_documents(eval, *p.tok, p.policy, rc, cfg.path);
  const std::string tok_file = stand_in ? stand_in->tokenizer : tokenizer_file(p.model_path);
  check_token_ids(p.docs, p.spec.vocab, tok_file, rc.eval_jsonl, p.model_path);
  for (const auto& id : rc.docs_to_show_ids)  // per-document attention maps of these documents
    if (std::none_of(p.docs.begin(), p.docs.end(), [&](const PreparedDoc& d) { return d.id == id; }))
      throw InputError(cfg.path, "key 'docs_to_show': no document '" + id + "' in " + rc.eval_jsonl);
  const auto tf = tokenizer_file(p.model_path);
  if (!tf.empty()) p.hashes["tokenizer_sha256"] = sha256_file(tf);
  if (p.random_weights) {
    // The weights are the config and the seed, one generator per layer since the pipeline stages:
    // "per-layer" keeps a --resume of an older run from mixing two weight sets.
    p.hashes["weights_fingerprint"] = "random:per-layer:" + sha256_file((fs::path(p.model_path) / "config.json").string());
    if (stand_in && fs::exists(stand_in->tokenizer)) p.hashes["tokenizer_sha256"] = sha256_file(stand_in->tokenizer);
  } else if (!stand_in) {
    p.hashes["weights_fingerprint"] = weights_fingerprint(p.model_path);
  }
  if (rc.intervention) {
    const auto& iv = *rc.intervention;
    for (int l : iv.layers)
      if (l < 0 || l >= L)
        throw InputError(cfg.path, "key 'intervention.layers': layer " + std::to_string(l) + " out of range (model has " +
                                       std::to_string(L) + " layers)");
    if (iv.mu_from.empty() && !iv.calibration_jsonl.empty()) {
      std::string calib_sha;
      auto calib = read_eval_jsonl(iv.calibration_jsonl, rc.eval_field, iv.calibration_docs, &calib_sha);
      if (calib.empty()) throw InputError(iv.calibration_jsonl, "no calibration documents");
      // Calibration documents are never evaluated: no shared id, no shared text.
      std::set<std::string> ids, texts;
      for (const auto& d : eval) ids.insert(d.id), texts.insert(sha256_hex(d.text.data(), d.text.size()));
      for (const auto& d : calib) {
        if (texts.count(sha256_hex(d.text.data(), d.text.size())))
          throw InputError(iv.calibration_jsonl, "calibration document '" + d.id + "' is also an evaluation document");
        p.calib_ids.push_back(d.id);
      }
      p.calib = prepare_documents(calib, *p.tok, p.policy, rc, cfg.path);
      check_token_ids(p.calib, p.spec.vocab, tok_file, iv.calibration_jsonl, p.model_path);
      p.hashes["calibration_sha256"] = calib_sha;
    }
  }
  // The evaluation window keeps absolute positions: no document may run past the model's context.
  if (rc.intervention && rc.intervention->window_eval && p.spec.max_positions > 0)
    for (const auto* set : {&p.docs, &p.calib})
      for (const auto& d : *set)
        if (static_cast<std::int64_t>(d.ids.size()) > p.spec.max_positions)
          throw InputError(cfg.path, "key 'intervention.window_eval': document '" + d.id + "' has " +
                                         std::to_string(d.ids.size()) + " tokens, more than the model's context (" +
                                         std::to_string(p.spec.max_positions) +
                                         "); lower max_total_tokens (positions are kept, never re-indexed)");
  // μ from an earlier results.h5 is checked here, on every rank alike, before the ranks split.
  if (rc.intervention && !rc.intervention->mu_from.empty() && !stand_in) (void)load_mu(rc.intervention->mu_from, p);
  std::int64_t tokens = 0;
  for (const auto& d : p.docs) tokens += static_cast<std::int64_t>(d.ids.size());
  p.cost = double(tokens) * double(p.spec.n_layers) * double(p.spec.d_model) * double(p.spec.d_model);
  return p;
}

// Loads μ, μ_head and ᾱ from a previous run's results.h5, checking it is the same model.
std::map<std::string, at::Tensor> load_mu(const std::string& path, const PreparedRun& p) {
  auto f = h5::File::open_read(path);
  const std::string g = p.rc.name;
  if (!f.exists(g + "/ssp/mu")) throw InputError(path, "no '" + g + "/ssp/mu' in this file (intervention.mu_from)");
  auto grp = f.group(g);
  if (grp.attr_string("weights_fingerprint").value_or("") != p.hashes.at("weights_fingerprint"))
    throw InputError(path, "μ file from another model (weights fingerprint differs) (intervention.mu_from)");
  std::map<std::string, at::Tensor> out;
  const auto L = p.spec.n_layers, H = p.spec.n_heads, d = p.spec.d_model;
  for (auto [name, shape] : std::vector<std::pair<std::string, std::vector<std::int64_t>>>{
           {"mu", {L, d}}, {"mu_head", {L, H, d}}, {"alpha_bar", {L, H}}}) {
    const std::string key = g + "/ssp/" + name;
    if (!f.exists(key)) throw InputError(path, "no '" + key + "' in this file (intervention.mu_from)");
    auto ds = f.open(key);
    if (ds.dims() != shape) throw InputError(path, "'" + key + "' has the wrong shape for this model");
    // The dtype too, not only the shape: a string dataset read into doubles overruns the buffer.
    if (ds.type() != h5::Type::F64) throw InputError(path, "'" + key + "' is not float64 (intervention.mu_from)");
    auto t = at::empty(shape, at::TensorOptions().dtype(at::kDouble));
    ds.read_all_as(h5::Type::F64, t.data_ptr());
    if (!at::isfinite(t).all().item<bool>())
      throw InputError(path, "'" + key + "' holds NaN or Inf (intervention.mu_from)");
    out[name] = t;
  }
  return out;
}

// The sizes of a bucket checkpoint's sums (geometry, μ) in the observation pass or the
// calibration pass: what read_bucket checks a checkpoint against.
std::pair<std::size_t, std::size_t> flat_sizes(const PreparedRun& p, bool observation) {
  if (!observation) return {0, MuAccumulator(p.spec.n_layers, p.spec.n_heads, p.spec.d_model).to_flat().size()};
  if (!p.rc.step_values) return {0, 0};
  return {GeometryAccumulator(p.spec.n_layers, p.spec.d_model, p.rc.geometry_sketch).flat_size(), 0};
}

// The windows whose μ and ᾱ are fitted on the calibration documents (window_eval's SSP variants).
std::vector<std::int64_t> fitted_windows(const RunConfig& rc) {
  if (!rc.intervention || !rc.intervention->window_eval || rc.intervention->window_eval->ssp.empty()) return {};
  return rc.intervention->window_eval->windows;
}
std::string window_phase(std::int64_t W) { return "calibration_W" + std::to_string(W); }
// The calibration phases: μ under full attention, then one per fitted window.
std::vector<std::string> calibration_phases(const RunConfig& rc) {
  std::vector<std::string> out{"calibration"};
  for (auto W : fitted_windows(rc)) out.push_back(window_phase(W));
  return out;
}
std::vector<WindowVariant> window_eval_variants(const RunConfig& rc) {
  if (!rc.intervention || !rc.intervention->window_eval) return {};
  const auto& w = *rc.intervention->window_eval;
  return window_variants(w.windows, w.keep, w.ssp);
}

// μ, μ_head and ᾱ merged over a calibration phase's buckets, in bucket order (rank-count independent).
std::map<std::string, at::Tensor> read_calibration(const std::string& out, const PreparedRun& p,
                                                   const std::string& phase, std::int64_t bucket_size) {
  PartialStore cstore(out, p.rc.name, phase);
  auto cb = make_buckets(p.calib, bucket_size);
  const auto calib_flat = flat_sizes(p, false);
  MuAccumulator all;
  for (std::size_t b = 0; b < cb.size(); ++b) {
    MuAccumulator m(p.spec.n_layers, p.spec.n_heads, p.spec.d_model);
    auto st = cstore.read_bucket(static_cast<std::int64_t>(b), cb[b].count, calib_flat.first, calib_flat.second);
    if (!st || st->done != cb[b].count)
      throw InputError(cstore.dir(), "calibration bucket " + std::to_string(b) + " is missing or incomplete");
    m.from_flat(st->mu);
    all.merge(m);
  }
  return all.result();
}

// --resume: every bucket checkpoint's header against what the bucket must hold, before
// the ranks split (a corrupt one found later would be one rank's error).
void check_checkpoints(const std::string& out, const std::vector<PreparedRun>& runs, std::int64_t bucket_size) {
  for (const auto& p : runs) {
    const auto obs = flat_sizes(p, true);
    PartialStore store(out, p.rc.name);
    const auto buckets = make_buckets(p.docs, bucket_size);
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      const auto done = store.check_bucket(static_cast<std::int64_t>(b), buckets[b].count, obs.first, obs.second);
      // The documents it counts must be there, whole and of the run's schema (their sums are in it).
      for (std::int64_t j = buckets[b].first; j < buckets[b].first + done; ++j) (void)store.check_doc(j);
    }
    if (p.calib.empty()) continue;
    const auto cal = flat_sizes(p, false);
    const auto cb = make_buckets(p.calib, bucket_size);
    for (const auto& phase : calibration_phases(p.rc)) {
      PartialStore cstore(out, p.rc.name, phase);
      for (std::size_t b = 0; b < cb.size(); ++b)
        cstore.check_bucket(static_cast<std::int64_t>(b), cb[b].count, cal.first, cal.second);
    }
  }
}

// Fault injection for the tests (a rank killed mid-run): slow each document down.
void fault_delay() {
  static const long delay_ms = [] {
    const char* e = std::getenv("SINK_FAULT_DELAY_MS");
    return e ? std::atol(e) : 0L;
  }();
  if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
}

// One phase over buckets of documents on this rank: `fn` computes a document and
// returns its arrays; the bucket state is checkpointed after every document.
// In a pipeline every stage runs the same loop (the same buckets, the same documents in the
// same order: that is what keeps the stages in step); only the `writer`, the stage that
// assembles each document, writes the store.
template <class Fn>
void run_buckets(const PartialStore& store, const std::vector<PreparedDoc>& docs, const std::vector<Bucket>& buckets,
                 const std::vector<std::int64_t>& mine, bool write_docs, std::pair<std::size_t, std::size_t> flat,
                 Fn&& fn, const std::function<void()>& tick, bool writer = true) {
  for (auto b : mine) {
    const Bucket& bk = buckets[b];
    BucketState st = store.read_bucket(b, bk.count, flat.first, flat.second).value_or(BucketState{});
    GeometryAccumulator geom;
    MuAccumulator mu;
    bool have = st.done > 0;
    for (std::int64_t j = bk.first + st.done; j < bk.first + bk.count; ++j) {
      GeometryAccumulator g;
      MuAccumulator m;
      DocArrays a;
      try {
        if (std::string(fault::at("doc.start", j)) == "oom") (void)at::empty({std::int64_t(1) << 40}, at::kFloat);
        a = fn(docs[j], j, g, m);
      } catch (const std::exception& e) {
        if (!is_out_of_memory(e)) throw;
        throw ResourceError(fs::path(store.dir()).filename().string(),
                            "out of memory on document '" + docs[j].id + "' (" + std::to_string(docs[j].ids.size()) +
                                " tokens): " + first_line(e.what()) +
                                "; lower max_total_tokens or run fewer ranks per node, then --resume");
      }
      fault::at("doc.computed", j);
      if (!writer) {  // a stage that only passes the document on
        st.done = j - bk.first + 1;
        tick();
        fault_delay();
        continue;
      }
      if (write_docs) store.write_doc(j, a);
      if (have) {  // continue the bucket's sums in document order
        if (!g.empty()) {
          if (geom.empty()) {
            geom = g.like();
            geom.from_flat(st.geometry);
          }
          geom.merge(g);
        }
        if (!m.empty()) {
          if (mu.empty()) {
            mu = m.like();
            mu.from_flat(st.mu);
          }
          mu.merge(m);
        }
      } else {
        geom = std::move(g);
        mu = std::move(m);
        have = true;
      }
      st.done = j - bk.first + 1;
      if (!geom.empty()) st.geometry = geom.to_flat();
      if (!mu.empty()) st.mu = mu.to_flat();
      store.write_bucket(b, st);
      fault::at("doc.recorded", j);
      tick();
      fault_delay();
    }
  }
}

// ---- pipeline stages (issue 18): a group of G ranks with N stages forms G/N pipelines of
// consecutive ranks; stage k of a pipeline holds layers [l0, l1) and hands each document's
// hidden state on to stage k + 1. The last stage assembles the document's record (the other
// stages send it their layers' rows of the observation and their hidden-state distances) and
// alone writes the partial store, exactly as a whole-model rank does.
struct Stages {
  int n = 1, stage = 0;  // stages per pipeline; this rank's
  int pipe = 0, n_pipes = 1;
  std::vector<std::pair<int, int>> layers;  // [l0, l1) per stage
  mutable std::int64_t hidden_bytes = 0;    // sent by this stage: hidden states (the rest is the record's rows)
  int l0() const { return layers[stage].first; }
  int l1() const { return layers[stage].second; }
  bool first() const { return stage == 0; }
  bool last() const { return stage == n - 1; }
  // HF hidden-state indices a stage produces: resid_pre of layer 0 (first stage), resid_post of
  // its layers, the final norm (last stage).
  std::pair<int, int> hidden(int k) const { return {layers[k].first == 0 ? 0 : layers[k].first + 1, layers[k].second + 1}; }
};

// This rank's place in the run's stage plan (resolve_run_stages: count checked, layers balanced by bytes).
Stages place_in_pipeline(const RunStages& rs, const dist::Comm& group) {
  Stages st;
  st.n = rs.stages;
  st.layers = rs.plan.layers;
  if (st.n < 1 || static_cast<int>(st.layers.size()) != st.n || group.size() % st.n != 0)
    throw std::runtime_error("stage plan of " + std::to_string(st.n) + " stages for a group of " +
                             std::to_string(group.size()) + " ranks");
  st.stage = group.rank() % st.n;
  st.pipe = group.rank() / st.n;
  st.n_pipes = group.size() / st.n;
  return st;
}

// One pass of a document through this stage: the hidden state in (embedding on the first
// stage), this stage's layers, the state out (the head's logits on the last stage, when the
// hooks want them). The document's first pass waits, before it sends, for the previous
// document's sends to have left: the stage computed this document meanwhile (that is the
// pipelining), and at most one document's buffers are in flight.
at::Tensor stage_pass(const Model& m, const Stages& st, dist::Transport& xp, const std::vector<std::int64_t>& ids,
                      std::int64_t tag, const Hooks& h, bool first_pass) {
  at::Tensor x;
  if (st.first()) {
    x = m.embed(ids);
  } else {
    x = at::empty({static_cast<std::int64_t>(ids.size()), m.spec().d_model},
                  at::TensorOptions().dtype(m.dtype()).device(m.device()));
    xp.recv(x, st.stage - 1, tag);
  }
  x = m.blocks(x, st.l0(), st.l1(), h);
  if (!st.last()) {
    if (first_pass) xp.wait_sends();
    xp.send(x, st.stage + 1, tag);
    st.hidden_bytes += static_cast<std::int64_t>(x.nbytes());
    return {};
  }
  return m.head(x, h);
}

// The observation's per-layer rows: the other stages send theirs to the last, which copies
// them into its Observer (the same views on both sides).
bool gather_observer(Observer& obs, const Stages& st, dist::Transport& xp, std::int64_t tag) {
  if (!st.last()) {
    for (auto& t : obs.stage_parts(st.l0(), st.l1())) xp.send(t, st.n - 1, tag);
    return false;
  }
  for (int q = 0; q + 1 < st.n; ++q)
    for (auto& t : obs.stage_parts(st.layers[q].first, st.layers[q].second)) xp.recv(t, q, tag);
  return true;
}

void add_ssp_arrays(DocArrays& a, const std::map<std::string, SspDocResult>& res) {
  for (const auto& [name, x] : res) {
    const std::string k = "ssp/" + name + "/";
    a[k + "nll_sum"] = at::tensor({x.nll_sum}, at::TensorOptions().dtype(at::kDouble));
    a[k + "n_scored"] = at::tensor({double(x.n)}, at::TensorOptions().dtype(at::kDouble));
    a[k + "kl"] = at::tensor({float(x.kl_mean)}, at::TensorOptions().dtype(at::kFloat));
    a[k + "resid_rel_l2"] = at::tensor(x.resid_rel_l2, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
    a[k + "resid_cos"] = at::tensor(x.resid_cos, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
  }
}

// SINK_TRANSPORT_STATS=FILE: each stage appends what it sent (for docs/distributed.md's measurements).
void report_transport(const Stages& st, const dist::Transport& xp, const std::string& run) {
  const char* path = std::getenv("SINK_TRANSPORT_STATS");
  if (!path || !*path) return;
  nlohmann::json j = {{"run", run},
                      {"stage", st.stage},
                      {"pipe", st.pipe},
                      {"stages", st.n},
                      {"transport", xp.name()},
                      {"bytes_sent", xp.bytes_sent()},
                      {"hidden_bytes", st.hidden_bytes}};
  std::ofstream(path, std::ios::app) << j.dump() + "\n" << std::flush;
}

// A document's observation and SSP passes through the pipeline; the record on the last stage
// (empty elsewhere). Every stage of the pipeline calls it for the same documents in the same order.
DocArrays staged_document(const Model& m, const PreparedDoc& d, std::int64_t j, const ObserveOptions& o,
                          const SinkBias* bias, const std::vector<SspMode>& modes, const Stages& st,
                          dist::Transport& xp, GeometryAccumulator& g) {
  const int L = m.spec().n_layers;
  const auto T = static_cast<std::int64_t>(d.ids.size());
  Observer obs(m, o, T);
  Hooks h;
  obs.install(h);
  SspOriginal original;  // the observation pass is also SSP's original pass
  if (bias) capture_original(h, original, L);
  (void)stage_pass(m, st, xp, d.ids, j, h, true);
  // The patched passes follow the original through the stages, mode by mode.
  std::vector<std::vector<at::Tensor>> patched(modes.size());
  std::vector<at::Tensor> logits(modes.size());
  for (std::size_t k = 0; k < modes.size(); ++k) {
    Hooks hm;
    capture_hidden_states(hm, patched[k], L);
    install_ssp(m, *bias, modes[k], hm);
    logits[k] = stage_pass(m, st, xp, d.ids, j, hm, false);
  }
  // Hidden-state distances where each layer lives: [modes, 2, this stage's hidden indices]
  // (float64, on the model's device for the transport; read on the host).
  auto distances = [&](int k, const at::Device& dev) {
    const auto [h0, h1] = st.hidden(k);
    return at::empty({static_cast<std::int64_t>(modes.size()), 2, h1 - h0},
                     at::TensorOptions().dtype(at::kDouble).device(dev));
  };
  at::Tensor mine = distances(st.stage, at::kCPU);
  {
    const auto [h0, h1] = st.hidden(st.stage);
    auto acc = mine.accessor<double, 3>();
    for (std::size_t k = 0; k < modes.size(); ++k)
      for (int l = h0; l < h1; ++l) {
        const auto [rel, cos] = ssp_resid_distance(original.hidden[l], patched[k][l], bias->sink);
        acc[k][0][l - h0] = rel, acc[k][1][l - h0] = cos;
      }
  }
  if (!gather_observer(obs, st, xp, j)) {
    if (!modes.empty()) xp.send(mine.to(m.device()), st.n - 1, j);
    return {};
  }
  DocArrays a = obs.finish();
  if (o.geometry) g = std::move(obs.geometry());
  if (bias) {
    std::vector<at::Tensor> all(st.n);
    all[st.stage] = mine;
    for (int q = 0; q + 1 < st.n && !modes.empty(); ++q) {
      all[q] = distances(q, m.device());
      xp.recv(all[q], q, j);
      all[q] = all[q].cpu();
    }
    std::map<std::string, SspDocResult> res;
    SspDocResult orig = ssp_score(m, d.ids, bias->sink, original.logits, nullptr);
    orig.resid_rel_l2.assign(L + 1, 0.0);
    orig.resid_cos.assign(L + 1, 1.0);
    res["original"] = orig;
    for (std::size_t k = 0; k < modes.size(); ++k) {
      SspDocResult r = ssp_score(m, d.ids, bias->sink, logits[k], &original.logits);
      for (int q = 0; q < st.n; ++q) {
        auto acc = all[q].accessor<double, 3>();
        for (std::int64_t i = 0; i < all[q].size(2); ++i) {
          r.resid_rel_l2.push_back(acc[k][0][i]);
          r.resid_cos.push_back(acc[k][1][i]);
        }
      }
      res[ssp_mode_name(modes[k])] = r;
    }
    add_ssp_arrays(a, res);
  }
  return a;
}

// observe_mu through the pipeline: μ's statistics on the last stage (empty elsewhere).
MuAccumulator staged_mu(const Model& m, const PreparedDoc& d, std::int64_t j, std::int64_t sink, const Stages& st,
                        dist::Transport& xp) {
  const auto T = static_cast<std::int64_t>(d.ids.size());
  Observer obs(m, mu_observe_options(sink, T), T);
  Hooks h;
  obs.install(h);
  (void)stage_pass(m, st, xp, d.ids, j, h, true);
  if (!gather_observer(obs, st, xp, j)) return {};
  obs.finish();
  return obs.mu();
}

// After results.h5 is complete: .partial goes (unless kept), rank 0 prints the summary and the path.
void finish_run(const std::string& out, const RunFlags& flags, dist::Comm& world) {
  const std::string path = (fs::path(out) / "results.h5").string();
  if (world.rank() == 0) {
    if (!flags.keep_partial) remove_partial(out);
    try {
      std::printf("%s", summarize_results({path}, SummaryFormat::Text).c_str());
    } catch (const std::exception& e) {  // the file is complete; a summary that fails is no reason to fail
      log::warn(std::string("no summary: ") + first_line(e.what()));
    }
    std::printf("%s\n", path.c_str());
    std::fflush(stdout);
  }
  world.barrier();
}

}  // namespace

int sink_run(const RunFlags& flags, dist::Comm& world) {
  const RunTimes times{now_iso(), ""};
  fault::set_rank(world.rank());
  Config cfg = load_config(flags.config_path, flags.sets);
  log::set_level(world.rank() == 0 ? cfg.log_level : "warn");  // rank 0 speaks for all

  // ---- validate everything before any weights load
  std::vector<PreparedRun> runs;
  for (const auto& rc : cfg.runs) runs.push_back(prepare_run(rc, cfg, flags.dry_run));
  std::vector<std::string> device_maps;
  for (const auto& p : runs) device_maps.push_back(p.rc.device_map);
  const auto devices = plan_devices(device_maps, cfg.path, world);  // [run][rank]; refuses here, dry run or not
  // Pipeline stages per run, resolved and checked before anything is printed or loaded (a refusal
  // is one line, dry run or not). The group is the world when the runs take turns; with a group per
  // run its size comes later, and so does that check.
  // With a group per run each group is a whole number of pipelines, so a sweep needs at least the
  // sum of its runs' stage counts; with fewer ranks every run takes the world in turn.
  std::vector<RunStages> stages;
  int stage_ranks = 0;  // the fewest ranks that give every run its own pipeline
  for (std::size_t r = 0; r < runs.size(); ++r) {
    stages.push_back(resolve_run_stages(runs[r].rc, runs[r].spec, longest_document(runs[r].docs, runs[r].calib),
                                        devices[r], 0, cfg.path));
    stage_ranks += stages.back().stages;
  }
  const bool whole_world = runs.size() == 1 || world.size() < stage_ranks;
  if (whole_world)
    for (std::size_t r = 0; r < runs.size(); ++r)
      stages[r] = resolve_run_stages(runs[r].rc, runs[r].spec, longest_document(runs[r].docs, runs[r].calib),
                                     devices[r], world.size(), cfg.path);
  if (flags.dry_run) {
    if (world.rank() == 0)
      for (std::size_t r = 0; r < runs.size(); ++r) {
        const auto& p = runs[r];
        std::printf("%s: %s (%s, %d layers, %d heads, d=%d), %zu documents, sink policy %s%s\n", p.rc.name.c_str(),
                    p.model_path.c_str(), family_name(p.spec.family), p.spec.n_layers, p.spec.n_heads,
                    p.spec.d_model, p.docs.size(), p.policy.name.c_str(),
                    p.rc.intervention ? (", intervention " + std::to_string(p.rc.intervention->modes.size()) + " modes").c_str() : "");
        std::printf("  device_map %s:", p.rc.device_map.c_str());
        for (std::size_t q = 0; q < devices[r].size(); ++q)
          std::printf("%s rank %zu %s (%s, local rank %d)", q ? "," : "", q, devices[r][q].device.c_str(),
                      devices[r][q].host.c_str(), devices[r][q].local_rank);
        std::printf("\n%s", describe_stage_plan(stages[r]).c_str());
      }
    return 0;
  }

  // The stage count is left out: partial results resume with any number of stages.
  const std::string cfg_sha = sha256_hex(cfg.resume_text.data(), cfg.resume_text.size());
  std::map<std::string, std::int64_t> run_docs;
  std::map<std::string, std::map<std::string, std::string>> run_inputs;
  for (const auto& p : runs) {
    run_docs[p.rc.name] = static_cast<std::int64_t>(p.docs.size());
    run_inputs[p.rc.name] = p.hashes;
    // Checkpoints count documents of buckets of this size: another size on --resume is another input.
    run_inputs[p.rc.name]["bucket_size"] = std::to_string(flags.bucket_size);
  }
  // --resume over a run that finished (results.h5 complete, of this config, .partial already
  // cleared): nothing is missing, so nothing to do; a requeued job ends cleanly.
  std::int64_t finished = 0;
  if (world.rank() == 0 && flags.resume && !fs::exists(fs::path(cfg.out) / ".partial" / "manifest.json"))
    finished = results_complete_for(cfg.out, cfg.text) ? 1 : 0;
  if (world.sum(finished) > 0) {
    if (world.rank() == 0)
      log::info((fs::path(cfg.out) / "results.h5").string() + " is already complete for this config: nothing to resume");
    return 0;
  }
  on_root_checked(world, [&] {
    fs::create_directories(cfg.out);
    lock_output_folder(cfg.out);  // before anything there is touched: a second run must not wipe the first's
    struct statvfs v {};
    if (::statvfs(cfg.out.c_str(), &v) == 0 && (v.f_flag & ST_RDONLY))
      throw ResourceError(cfg.out, "read-only file system; nothing can be written there");
    // A results file someone made read-only is kept, not silently replaced at the end of a long run.
    const fs::path results = fs::path(cfg.out) / "results.h5";
    std::error_code ec;
    const auto st = fs::status(results, ec);
    const auto any_write = fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write;
    if (!ec && fs::exists(st) && (st.permissions() & any_write) == fs::perms::none)
      throw ResourceError(results.string(), "is read-only; refusing to replace it (make it writable, or set another out:)");
    if (!flags.resume) check_existing_results(cfg.out, cfg.text, flags.overwrite);  // --resume: the manifest decides
    prepare_partial_dir(cfg.out, cfg_sha, run_docs, flags.resume, run_inputs);
    if (flags.resume) check_checkpoints(cfg.out, runs, flags.bucket_size);  // here, once: not on one rank later
    fs::remove(results.string() + ".writing", ec);  // left by a run killed while writing; never a result
  });
  world.barrier();

  // ---- groups: one per run when there are enough ranks (sized by cost, in whole pipelines), else
  // everyone runs them in turn. Ranks no whole pipeline can use (a sweep with stages) sit out (color R).
  const int R = static_cast<int>(runs.size());
  std::vector<int> color_of_rank(world.size(), 0);
  if (!whole_world) {
    double total = 0;
    for (const auto& p : runs) total += p.cost;
    std::vector<int> unit(R), size(R);
    for (int r = 0; r < R; ++r) size[r] = unit[r] = stages[r].stages;
    const int left = world.size() - stage_ranks;
    std::vector<std::pair<double, int>> rem;
    for (int r = 0; r < R; ++r) {
      const double want = left * runs[r].cost / total / unit[r];  // in pipelines
      size[r] += unit[r] * static_cast<int>(want);
      rem.push_back({want - std::floor(want), r});
    }
    int assigned = 0;
    for (int r = 0; r < R; ++r) assigned += size[r];
    std::sort(rem.begin(), rem.end(), [](auto& a, auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
    for (bool grew = true; grew;) {  // the leftover ranks, a pipeline per run and round, largest remainder first
      grew = false;
      for (const auto& [frac, r] : rem)
        if (assigned + unit[r] <= world.size()) size[r] += unit[r], assigned += unit[r], grew = true;
    }
    std::fill(color_of_rank.begin(), color_of_rank.end(), R);
    for (int r = 0, k = 0; r < R; ++r)
      for (int j = 0; j < size[r]; ++j) color_of_rank[k++] = r;
  }
  const int color = color_of_rank[world.rank()];
  dist::Comm group = world.split(color, world.rank());
  set_rank_local_phase(true);  // from here an error may be one rank's own (rank_errors.hpp)
  std::vector<int> my_runs;
  for (int r = 0; r < R; ++r)
    if (whole_world || r == color) my_runs.push_back(r);

  const int threads = flags.threads > 0 ? flags.threads
                                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                                          std::max(1, world.size()));
  at::set_num_threads(threads);
  const bool show = flags.progress && world.rank() == 0;

  std::vector<RunOutcome> outcomes(R);
  for (int r : my_runs) {
    auto& p = runs[r];
    const auto& rc = p.rc;
    LoadOptions lo;
    lo.dtype = rc.dtype;
    std::unique_ptr<Model> model;
    std::map<std::string, at::Tensor> mu;
    Stages place;
    // Every rank of the group loads the same files: agreed on, so one line is printed, once.
    agree_on_errors(group, world, "sink-run", [&] {
      const at::Device dev(devices[r][world.rank()].device);
      lo.device = dev.str();
      // Resolved again with this group's size (a sweep's groups are sized only after the split).
      const RunStages rs =
          resolve_run_stages(rc, p.spec, longest_document(p.docs, p.calib), devices[r], group.size(), cfg.path);
      place = place_in_pipeline(rs, group);
      if (place.n > 1) {  // this stage's layers only (the embedding on the first, the head on the last)
        lo.layer_begin = place.l0();
        lo.layer_end = place.l1();
      }
      log::info(rc.name + ": loading " + p.model_path + " (" + rc.dtype + " on " + lo.device + "), " +
                std::to_string(p.docs.size()) + " documents, group of " + std::to_string(group.size()) + " ranks");
      model = p.random_weights ? random_model((fs::path(p.model_path) / "config.json").string(), lo)
                               : load_model(p.model_path, lo);
      if (rc.intervention && !rc.intervention->mu_from.empty()) mu = load_mu(rc.intervention->mu_from, p);
    });
    // One communicator and transport per pipeline (consecutive ranks of the group).
    dist::Comm pipe = group.split(place.pipe, place.stage);
    std::unique_ptr<dist::Transport> xp;
    if (place.n > 1) {
      xp = dist::make_transport(pipe, lo.device);
      if (group.rank() == 0) {
        std::string ls;
        for (const auto& [a, b] : place.layers)
          ls += (ls.empty() ? "" : ", ") + std::to_string(a) + "-" + std::to_string(b - 1);
        log::info(rc.name + ": " + std::to_string(place.n_pipes) + " pipeline(s) of " + std::to_string(place.n) +
                  " stages (layers " + ls + "; transport " + xp->name() + ")");
      }
    }
    c10::InferenceMode guard;
    const std::int64_t s = p.policy.position;

    // ---- μ: from a previous run, or fitted on the calibration documents
    std::vector<SspMode> modes;
    if (rc.intervention) {
      for (const auto& m : rc.intervention->modes) modes.push_back(parse_ssp_mode(m));
      if (!rc.intervention->mu_from.empty()) {
        // read above
      } else if (p.calib.empty()) {  // `zero` alone needs no μ
        mu = MuAccumulator(p.spec.n_layers, p.spec.n_heads, p.spec.d_model).result();
      }
    }
    // One calibration phase: μ statistics per document by `observe`, checkpointed per bucket.
    // (Buckets go to pipelines; in a pipeline every stage runs the loop, the last one records.)
    auto calibrate = [&](const std::string& phase,
                         const std::function<MuAccumulator(const PreparedDoc&, std::int64_t)>& observe) {
      PartialStore cstore(cfg.out, rc.name, phase);
      auto cb = make_buckets(p.calib, flags.bucket_size);
      auto mine = assign_buckets(cb, place.pipe, place.n_pipes);
      Progress prog(rc.name + " " + phase, static_cast<std::int64_t>(p.calib.size()), show, flags.progress_seconds);
      std::int64_t done = 0, toks = 0;
      run_buckets(
          cstore, p.calib, cb, mine, false, flat_sizes(p, false),
          [&](const PreparedDoc& d, std::int64_t j, GeometryAccumulator&, MuAccumulator& m) {
            m = observe(d, j);
            toks += static_cast<std::int64_t>(d.ids.size());
            return DocArrays{};
          },
          [&] { prog.update(++done * place.n_pipes, toks * place.n_pipes); }, place.last());
      if (xp) xp->wait_sends();
      group.barrier();
      return read_calibration(cfg.out, p, phase, flags.bucket_size);
    };
    if (rc.intervention && rc.intervention->mu_from.empty() && !p.calib.empty())
      mu = calibrate("calibration", [&](const PreparedDoc& d, std::int64_t j) {
        return place.n > 1 ? staged_mu(*model, d, j, s, place, *xp) : observe_mu(*model, d.ids, s);
      });
    auto make_bias = [&](const std::map<std::string, at::Tensor>& m) {
      SinkBias b;
      b.sink = s;
      b.head_granularity = rc.intervention->granularity == "head";
      b.patched.assign(p.spec.n_layers, rc.intervention->layers.empty());
      for (int l : rc.intervention->layers) b.patched[l] = true;
      b.set_mu(m);
      b.seed = rc.intervention->seed;
      return b;
    };
    SinkBias bias;
    if (rc.intervention) bias = make_bias(mu);
    // window_eval: μ and ᾱ under each window (the sink kept as a key, averaged over the rows the
    // window hides it from), for the SSP variants.
    const auto variants = window_eval_variants(rc);
    std::map<std::int64_t, SinkBias> window_bias;
    for (auto W : fitted_windows(rc))
      window_bias[W] = make_bias(
          calibrate(window_phase(W), [&, W](const PreparedDoc& d, std::int64_t) {  // one stage (config.cpp)
            return observe_mu_window(*model, d.ids, s, W);
          }));

    // ---- observation (and SSP) over the evaluation documents
    PartialStore store(cfg.out, rc.name);
    auto buckets = make_buckets(p.docs, flags.bucket_size);
    auto mine = assign_buckets(buckets, place.pipe, place.n_pipes);
    Progress prog(rc.name, static_cast<std::int64_t>(p.docs.size()), show, flags.progress_seconds);
    std::int64_t toks = 0;
    ObserveOptions o;
    o.sink = s;
    o.max_tokens_to_calc = rc.max_tokens_to_calc;
    o.max_tokens_to_show = rc.max_tokens_to_show;
    o.layers_to_show = rc.layers_to_show;
    o.basic = rc.step_basic;
    o.norms = rc.step_norms;
    o.values = rc.step_values;
    o.viz = rc.step_viz;
    o.geometry = rc.step_values;
    o.sketch = rc.geometry_sketch;
    o.top_keys = rc.top_keys;
    run_buckets(
        store, p.docs, buckets, mine, true, flat_sizes(p, true),
        [&](const PreparedDoc& d, std::int64_t j, GeometryAccumulator& g, MuAccumulator&) {
          const auto T = static_cast<std::int64_t>(d.ids.size());
          if (place.n > 1) {
            toks += T;
            return staged_document(*model, d, j, o, rc.intervention ? &bias : nullptr, modes, place, *xp, g);
          }
          Observer obs(*model, o, T);
          Hooks h;
          obs.install(h);
          SspOriginal original;  // the observation pass is also SSP's original pass
          if (rc.intervention) capture_original(h, original, p.spec.n_layers);
          model->forward(d.ids, h);
          DocArrays a = obs.finish();
          if (o.geometry) g = std::move(obs.geometry());
          if (rc.intervention) {
            add_ssp_arrays(a, ssp_measure(*model, d.ids, bias, modes, &original));
            add_ssp_arrays(a, window_measure(*model, d.ids, s, variants, window_bias, original));
          }
          toks += T;
          return a;
        },
        [&] {
          if (show) {
            std::int64_t n = 0;
            for (int q : my_runs) n += PartialStore(cfg.out, runs[q].rc.name).count_docs();
            (void)n;
            prog.update(store.count_docs(), toks * place.n_pipes);
          }
        },
        place.last());
    if (xp) {
      xp->wait_sends();
      report_transport(place, *xp, rc.name);
    }
    group.barrier();
  }
  world.barrier();
  set_rank_local_phase(false);  // what follows every rank does alike

  // ---- every rank assembles every run's outcome from the partial results (identical everywhere)
  for (int r = 0; r < R; ++r) {
    auto& p = runs[r];
    auto& o = outcomes[r];
    o.rc = p.rc;
    o.spec = p.spec;
    o.model_path = p.model_path;
    o.dtype = p.rc.dtype;
    o.device = p.rc.device_map;
    std::vector<int> ran;  // the world ranks that computed this run
    for (int q = 0; q < world.size(); ++q)
      if (whole_world || color_of_rank[q] == r) ran.push_back(q);
    o.devices = describe_devices(devices[r], ran);
    o.stages = stages[r].stages;
    o.policy = p.policy;
    o.docs = p.docs;
    o.hashes = p.hashes;
    o.calibration_ids = p.calib_ids;
    if (p.rc.intervention) o.modes = p.rc.intervention->modes;
    for (const auto& v : window_eval_variants(p.rc)) o.modes.push_back(v.name());
    PartialStore store(cfg.out, p.rc.name);
    auto buckets = make_buckets(p.docs, flags.bucket_size);
    const auto obs_flat = flat_sizes(p, true);
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      auto st = store.read_bucket(static_cast<std::int64_t>(b), buckets[b].count, obs_flat.first, obs_flat.second);
      if (!st || st->done != buckets[b].count)
        throw std::runtime_error(p.rc.name + ": bucket " + std::to_string(b) + " is not complete after the barrier");
      if (!st->geometry.empty()) {
        GeometryAccumulator g(p.spec.n_layers, p.spec.d_model, p.rc.geometry_sketch);
        g.from_flat(st->geometry);
        o.geometry.merge(g);
      }
    }
    if (p.rc.intervention) {
      if (!p.rc.intervention->mu_from.empty()) {
        o.mu = load_mu(p.rc.intervention->mu_from, p);
      } else if (p.calib.empty()) {
        o.mu = MuAccumulator(p.spec.n_layers, p.spec.n_heads, p.spec.d_model).result();
      } else {
        o.mu = read_calibration(cfg.out, p, "calibration", flags.bucket_size);
      }
      for (auto W : fitted_windows(p.rc))
        o.window_mu[W] = read_calibration(cfg.out, p, window_phase(W), flags.bucket_size);
    }
  }
  RunTimes t = times;
  t.end = now_iso();
  write_results(cfg.out, cfg, outcomes, t, world);
  finish_run(cfg.out, flags, world);
  return 0;
}

}  // namespace sink
