// OUT/results.h5, written by every rank together (MPI-IO when there are
// several): per-document rows at their global index, one block of documents
// per rank; summaries and attributes once. The schema is in docs/results.md.
#include "sink/run/results.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include <sys/statvfs.h>
#include <unistd.h>

#include "sink/dist/comm.hpp"
#include "sink/run/partial.hpp"
#include "sink/run/results_schema.hpp"
#include "sink/store/h5.hpp"
#include "sink/util/error.hpp"
#include "sink/util/fault.hpp"
#include "sink/util/version.hpp"


namespace sink {
namespace fs = std::filesystem;

namespace {

h5::Type h5_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return h5::Type::F32;
    case at::kDouble: return h5::Type::F64;
    case at::kLong: return h5::Type::I64;
    case at::kInt: return h5::Type::I32;
    default: throw std::logic_error("results: unsupported dtype");
  }
}

// Concatenates every rank's rows in rank order (= document order, since blocks are contiguous).
std::vector<double> allgather_rows(const dist::Comm& c, const std::vector<double>& mine) {
  std::vector<std::uint8_t> bytes(mine.size() * 8);
  std::memcpy(bytes.data(), mine.data(), bytes.size());
  std::vector<double> all;
  for (const auto& b : c.allgather(bytes)) {
    const auto* d = reinterpret_cast<const double*>(b.data());
    all.insert(all.end(), d, d + b.size() / 8);
  }
  return all;
}

void write_tensor(const h5::Group& g, const std::string& name, const at::Tensor& t) {
  auto c = t.to(at::kCPU).contiguous();
  auto ds = g.create(name, h5_type(c.scalar_type()), c.sizes().vec());
  ds.write_all(c.data_ptr());
}

// Percentile bootstrap over documents of the perplexity ratio exp(ΣΔNLL / Σn); seeded, so every rank agrees.
std::pair<double, double> bootstrap_ratio(const std::vector<double>& nll_mode, const std::vector<double>& nll_orig,
                                          const std::vector<double>& n, int reps = 2000) {
  const std::size_t N = n.size();
  if (N == 0) return {NAN, NAN};
  std::mt19937_64 rng(20251127);  // fixed: a result must not depend on when it was computed
  std::vector<double> r(reps);
  for (int b = 0; b < reps; ++b) {
    double dm = 0, dn = 0;
    for (std::size_t i = 0; i < N; ++i) {
      const std::size_t j = static_cast<std::size_t>(rng() % N);
      dm += nll_mode[j] - nll_orig[j];
      dn += n[j];
    }
    r[b] = dn > 0 ? std::exp(dm / dn) : NAN;
  }
  std::sort(r.begin(), r.end());
  return {r[static_cast<std::size_t>(0.025 * (reps - 1))], r[static_cast<std::size_t>(0.975 * (reps - 1))]};
}

// The sink rates (docs/metrics.md). Threshold of the mean: (l, h) counts when its score averaged
// over documents exceeds ε. Gu et al.'s protocol (sail-sg/Attention-Sink, eval_sink_open_source.py):
// each document's T = 64 score is thresholded, then the indicator is averaged over documents,
// layers and heads; their code requires ≥ 64 tokens, so shorter documents are left out (counted
// in `sink_rate_gu_n_docs`). The indicators are 0/1, so their sums are exact in any order.
void write_sink_rates(const h5::Group& g, const h5::Group& sg, const std::vector<DocArrays>& mine, const RunOutcome& o,
                      std::int64_t lo, const at::Tensor& sink_mean, const at::Tensor& t64_mean, double eps,
                      dist::Comm& world) {
  const std::int64_t L = o.spec.n_layers, H = o.spec.n_heads, gu_T = 64;
  std::vector<std::int64_t> index;
  std::vector<double> rows;
  for (std::size_t k = 0; k < mine.size(); ++k) {
    const auto i = lo + static_cast<std::int64_t>(k);
    if (static_cast<std::int64_t>(o.docs[i].ids.size()) < gu_T) continue;
    auto ind = (mine[k].at("basic/sink_score_t64") > eps).to(at::kDouble).contiguous();
    index.push_back(i);
    rows.insert(rows.end(), ind.data_ptr<double>(), ind.data_ptr<double>() + L * H);
    rows.push_back(1.0);
  }
  auto tot = world.sum_by_index(index, rows, static_cast<std::size_t>(L * H + 1));
  const double nd = tot.back(), nan = std::numeric_limits<double>::quiet_NaN();
  auto per = at::from_blob(tot.data(), {L, H}, at::TensorOptions().dtype(at::kDouble)).clone();
  sg.attr("sink_rate_gu", nd > 0 ? per.sum().item<double>() / (nd * double(L * H)) : nan);
  sg.attr("sink_rate_gu_n_docs", static_cast<std::int64_t>(nd));
  sg.attr("sink_rate", (sink_mean > eps).to(at::kDouble).mean().item<double>());
  sg.attr("sink_rate_t64_of_mean", (t64_mean > eps).to(at::kDouble).mean().item<double>());
  write_tensor(g, "summary/sink_rate_gu_by_layer",
               nd > 0 ? per.sum(1) / (nd * double(H)) : at::full({L}, nan, at::TensorOptions().dtype(at::kDouble)));
  write_tensor(g, "summary/sink_rate_by_layer", (sink_mean > eps).to(at::kDouble).mean(1));
  write_tensor(g, "summary/sink_rate_t64_of_mean_by_layer", (t64_mean > eps).to(at::kDouble).mean(1));
}

void write_run(const h5::File& f, const std::string& out_dir, const RunOutcome& o, dist::Comm& world) {
  const auto& s = o.spec;
  const std::int64_t N = static_cast<std::int64_t>(o.docs.size()), L = s.n_layers, H = s.n_heads;
  const std::int64_t lo = N * world.rank() / world.size(), hi = N * (world.rank() + 1) / world.size();
  auto g = f.group(o.rc.name);

  // ---- attributes: what was run, on what, with which policy
  g.attr("model", o.rc.model);
  g.attr("model_path", o.model_path);
  g.attr("architecture", s.architecture);
  g.attr("family", std::string(family_name(s.family)));
  g.attr("n_layers", std::int64_t(L));
  g.attr("n_heads", std::int64_t(H));
  g.attr("n_kv_heads", std::int64_t(s.n_kv_heads));
  g.attr("d_model", std::int64_t(s.d_model));
  g.attr("head_dim", std::int64_t(s.head_dim));
  g.attr("vocab_size", std::int64_t(s.vocab));
  g.attr("dtype", o.dtype);
  g.attr("device_map", o.device);
  g.attr("devices", o.devices);
  g.attr("stages", static_cast<std::int64_t>(o.stages));
  g.attr("sink_policy", o.policy.name);
  g.attr("sink_position", o.policy.position);
  g.attr("sink_token_prepended", o.policy.prepended);
  g.attr("epsilon", o.rc.epsilon);
  g.attr("max_tokens_to_calc", o.rc.max_tokens_to_calc);
  g.attr("max_tokens_to_show", o.rc.max_tokens_to_show);
  g.attr("max_total_tokens", o.rc.max_total_tokens);
  std::vector<std::int64_t> show(o.rc.layers_to_show.begin(), o.rc.layers_to_show.end());
  if (!show.empty()) g.attr("layers_to_show", show);
  // Each layer's sliding window (0 = full attention): past it the sink is hidden from a layer's
  // queries, which the window-aware metrics and SSP follow, so a reader needs it to read them.
  std::vector<std::int64_t> windows(L, 0);
  for (int l = 0; l < L && l < static_cast<int>(s.sliding_window.size()); ++l) windows[l] = s.sliding_window[l];
  g.attr("sliding_window", windows);
  g.attr("eval_jsonl", o.rc.eval_jsonl);
  g.attr("n_docs", N);
  for (const auto& [k, v] : o.hashes) g.attr(k, v);

  // ---- docs/
  std::vector<std::string> ids;
  std::vector<std::int32_t> ntok(N);
  std::vector<std::uint8_t> trunc(N);
  std::size_t width = 1;
  for (std::int64_t i = 0; i < N; ++i) {
    ids.push_back(o.docs[i].id);
    width = std::max(width, ids.back().size());
    ntok[i] = static_cast<std::int32_t>(o.docs[i].ids.size());
    trunc[i] = o.docs[i].truncated;
  }
  auto dids = g.create_strings("docs/id", N, width);
  dids.write_strings(lo, std::vector<std::string>(ids.begin() + lo, ids.begin() + hi));
  g.create("docs/n_tokens", h5::Type::I32, {N}).write_rows(lo, hi - lo, ntok.data() + lo);
  g.create("docs/truncated", h5::Type::U8, {N}).write_rows(lo, hi - lo, trunc.data() + lo);
  write_doc_tokens(g, o, lo, hi);  // token ids and strings, the eval set's other fields

  // ---- per-document arrays from OUT/.partial, this rank's block of documents
  PartialStore store(out_dir, o.rc.name);
  std::vector<DocArrays> mine;
  for (std::int64_t i = lo; i < hi; ++i) mine.push_back(store.read_doc(i));
  const DocArrays first = store.read_doc(0);  // every rank knows the keys and shapes
  const std::string kMap = "basic/attention_map";
  std::vector<double> local_sums;  // for the means over documents, reduced in rank order
  for (const auto& [key, t0] : first) {
    if (key == kMap || key.rfind("ssp/", 0) == 0) continue;
    std::vector<std::int64_t> dims{N};
    for (auto d : t0.sizes()) dims.push_back(d);
    auto ds = g.create(key, h5_type(t0.scalar_type()), dims);
    at::Tensor rows = mine.empty() ? at::empty({0}, t0.options()) : [&] {
      std::vector<at::Tensor> v;
      for (auto& a : mine) v.push_back(a.at(key).unsqueeze(0));
      return at::cat(v).contiguous();
    }();
    ds.write_rows(lo, hi - lo, rows.data_ptr());
  }
  // Means over documents of the sink scores and the attention maps (NaN-aware).
  // Means over documents (NaN-aware), summed in document order whatever the number of ranks.
  auto mean_over_docs = [&](const std::string& key) {
    auto shape = first.at(key).sizes().vec();
    const auto n = first.at(key).numel();
    std::vector<std::int64_t> index;
    std::vector<double> rows;
    for (std::size_t k = 0; k < mine.size(); ++k) {
      auto x = mine[k].at(key).to(at::kDouble).contiguous();
      auto ok = at::logical_not(at::isnan(x));
      auto v = at::where(ok, x, at::zeros_like(x)).contiguous();
      auto c = ok.to(at::kDouble).contiguous();
      index.push_back(lo + static_cast<std::int64_t>(k));
      rows.insert(rows.end(), v.data_ptr<double>(), v.data_ptr<double>() + n);
      rows.insert(rows.end(), c.data_ptr<double>(), c.data_ptr<double>() + n);
    }
    auto tot = world.sum_by_index(index, rows, static_cast<std::size_t>(2 * n));
    auto t = at::from_blob(tot.data(), {2, n}, at::TensorOptions().dtype(at::kDouble)).clone();
    return (t[0] / t[1]).view(shape).to(at::kFloat);  // 0/0 = NaN where no document had a value
  };
  if (first.count(kMap)) write_tensor(g, kMap, mean_over_docs(kMap));
  write_doc_maps(g, o, store);  // docs_to_show: their own attention maps
  auto sink_mean = mean_over_docs("basic/sink_score");
  auto t64_mean = mean_over_docs("basic/sink_score_t64");
  write_tensor(g, "summary/sink_score_mean", sink_mean);
  write_tensor(g, "summary/sink_score_t64_mean", t64_mean);
  const double eps = o.rc.epsilon;
  auto sg = g.group("summary");
  write_sink_rates(g, sg, mine, o, lo, sink_mean, t64_mean, eps, world);
  sg.attr("epsilon", eps);

  // ---- geometry of the sink vectors and of the control (merged over buckets in order)
  if (!o.geometry.empty()) {
    auto gg = g.group("summary/geometry");
    for (const auto& [k, t] : o.geometry.summary()) write_tensor(g, "summary/geometry/" + k, t);
    gg.attr("columns", std::string("0 = sink vectors C[l,i], 1 = control R[l,i] = attention output - C[l,i]"));
    gg.attr("pca", o.geometry.exact() ? std::string("exact covariance")
                                      : "Nystrom sketch, width " + std::to_string(o.geometry.sketch_width()));
  }

  // ---- SSP: μ, and per mode the measures on identical token sets
  if (!o.modes.empty()) {
    auto sp = g.group("ssp");
    for (const char* k : {"mu", "mu_head", "alpha_bar"}) write_tensor(g, std::string("ssp/") + k, o.mu.at(k).to(at::kDouble));
    if (!o.calibration_ids.empty()) sp.write_strings("calibration_ids", o.calibration_ids);
    sp.attr("granularity", o.rc.intervention->granularity);
    std::string layers;
    for (int l : o.rc.intervention->layers) layers += (layers.empty() ? "" : ",") + std::to_string(l);
    sp.attr("layers", layers.empty() ? std::string("all") : layers);
    sp.attr("random_seed", static_cast<std::int64_t>(o.rc.intervention->seed));
    for (const auto& [W, m] : o.window_mu)
      for (const char* k : {"mu", "mu_head", "alpha_bar"})
        write_tensor(g, "ssp/window_mu/w" + std::to_string(W) + "/" + k, m.at(k).to(at::kDouble));
    std::vector<std::string> all_modes{"original"};
    all_modes.insert(all_modes.end(), o.modes.begin(), o.modes.end());
    std::map<std::string, std::vector<double>> nll_all;
    std::vector<double> n_all;
    for (const auto& m : all_modes) {
      const std::string k = "ssp/" + m + "/";
      std::vector<double> nll_sum, n, kl;
      for (auto& a : mine) {
        nll_sum.push_back(a.at(k + "nll_sum").item<double>());
        n.push_back(a.at(k + "n_scored").item<double>());
        kl.push_back(a.at(k + "kl").item<double>());
      }
      auto all_sum = allgather_rows(world, nll_sum);
      auto all_n = allgather_rows(world, n);
      auto all_kl = allgather_rows(world, kl);
      nll_all[m] = all_sum;
      n_all = all_n;
      std::vector<double> mean(N);
      for (std::int64_t i = 0; i < N; ++i) mean[i] = all_n[i] > 0 ? all_sum[i] / all_n[i] : NAN;
      g.create(k + "nll", h5::Type::F64, {N}).write_rows(lo, hi - lo, mean.data() + lo);
      g.create(k + "nll_sum", h5::Type::F64, {N}).write_rows(lo, hi - lo, all_sum.data() + lo);
      std::vector<std::int64_t> ni(all_n.begin(), all_n.end());
      g.create(k + "n_scored", h5::Type::I64, {N}).write_rows(lo, hi - lo, ni.data() + lo);
      std::vector<float> klf(all_kl.begin(), all_kl.end());
      g.create(k + "kl", h5::Type::F32, {N}).write_rows(lo, hi - lo, klf.data() + lo);
      for (const char* r : {"resid_rel_l2", "resid_cos"}) {
        std::vector<at::Tensor> v;
        for (auto& a : mine) v.push_back(a.at(k + r).unsqueeze(0));
        auto rows = v.empty() ? at::empty({0}, at::TensorOptions().dtype(at::kFloat)) : at::cat(v).contiguous();
        g.create(k + r + "_doc", h5::Type::F32, {N, L + 1}).write_rows(lo, hi - lo, rows.data_ptr());
        write_tensor(g, k + r, mean_over_docs(k + r));
      }
      double tot = 0, cnt = 0, kls = 0;
      for (std::int64_t i = 0; i < N; ++i) tot += all_sum[i], cnt += all_n[i], kls += all_kl[i];
      auto mg = g.group("ssp/" + m);
      mg.attr("ppl", std::exp(tot / cnt));
      mg.attr("nll_mean", tot / cnt);
      mg.attr("n_tokens_scored", static_cast<std::int64_t>(cnt));
      mg.attr("kl_mean", kls / double(N));
    }
    for (const auto& m : o.modes) {
      double dm = 0, dn = 0;
      for (std::int64_t i = 0; i < N; ++i) dm += nll_all[m][i] - nll_all["original"][i], dn += n_all[i];
      auto [lo_ci, hi_ci] = bootstrap_ratio(nll_all[m], nll_all["original"], n_all);
      auto mg = g.group("ssp/" + m);
      mg.attr("ppl_ratio", std::exp(dm / dn));
      mg.attr("ppl_ratio_ci95_low", lo_ci);
      mg.attr("ppl_ratio_ci95_high", hi_ci);
      mg.attr("bootstrap", std::string("2000 resamples of documents, percentile interval, seed 20251127"));
      if (m.rfind("window_w", 0) == 0) {  // window_eval's variants: window_w64_keep4, window_w64_ssp_bias
        const auto us = m.find('_', 8);
        const std::string variant = m.substr(us + 1);
        const bool kept = variant.rfind("keep", 0) == 0;
        mg.attr("window", static_cast<std::int64_t>(std::stoll(m.substr(8, us - 8))));
        mg.attr("keep", static_cast<std::int64_t>(kept ? std::stoll(variant.substr(4)) : 0));
        mg.attr("ssp", kept ? std::string("none") : variant);
      }
    }
  }
  g.attr("complete", std::int64_t(1));
}

}  // namespace

// Refuses before the HDF5 file is created when the disk cannot hold it: a write that fails
// half-way leaves HDF5's state broken for the rest of the process. The estimate is the size
// of the per-document partial results (the file holds the same numbers) plus a margin.
void check_space_for_results(const std::string& out_dir, const std::vector<RunOutcome>& runs, dist::Comm& world) {
  if (std::string(fault::at("results.space_check")) == "skip") return;  // the tests' way to fail inside HDF5
  std::string err;
  if (world.rank() == 0) {
    double need = 1 << 20;
    std::error_code ec;
    for (const auto& r : runs)
      for (const auto& e : fs::directory_iterator(fs::path(out_dir) / ".partial" / r.rc.name, ec))
        if (e.path().extension() == ".safetensors") need += 1.1 * static_cast<double>(e.file_size(ec));
    struct statvfs v {};
    if (::statvfs(out_dir.c_str(), &v) == 0 && !(v.f_flag & ST_RDONLY)) {
      const double have = static_cast<double>(v.f_bavail) * static_cast<double>(v.f_frsize);
      if (have < need) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%.1f MiB free, writing results.h5 needs about %.1f MiB", have / (1 << 20),
                      need / (1 << 20));
        err = std::string("no space left on device (") + buf +
              "); the partial results are kept: free space, then rerun with --resume";
      }
    }
  }
  world.bcast(err, 0);
  if (!err.empty()) throw ResourceError(out_dir, err, /*on_every_rank=*/true);
}

void write_results(const std::string& out_dir, const Config& cfg, const std::vector<RunOutcome>& runs,
                   const RunTimes& times, dist::Comm& world) {
  const std::string final_path = (fs::path(out_dir) / "results.h5").string();
  const std::string tmp = final_path + ".writing";
  check_space_for_results(out_dir, runs, world);
  try {
    auto f = h5::File::create(tmp, &world);
    fault::at("results.created");
    f.attr("tool", std::string("sink"));
    f.attr("version", std::string(SINK_VERSION));
    f.attr("git_commit", std::string(SINK_GIT_COMMIT));
    f.attr("config_path", cfg.path);
    f.attr("config", cfg.text);
    f.attr("start_time", times.start);
    f.attr("end_time", times.end);
    f.attr("n_ranks", static_cast<std::int64_t>(world.size()));
    std::vector<std::string> names;
    for (std::size_t r = 0; r < runs.size(); ++r) {
      write_run(f, out_dir, runs[r], world);
      names.push_back(runs[r].rc.name);
      fault::at("results.run", static_cast<std::int64_t>(r));
    }
    std::string joined;
    for (const auto& n : names) joined += (joined.empty() ? "" : ",") + n;
    f.attr("runs", joined);
    f.attr("complete", std::int64_t(1));
    f.close();
  } catch (const std::runtime_error& e) {
    if (dynamic_cast<const InputError*>(&e) || dynamic_cast<const ResourceError*>(&e)) throw;
    // HDF5's POSIX driver puts the errno of a failed write in its message; otherwise (MPI-IO)
    // ask the file system what it was.
    std::string why;
    const std::string msg = e.what();
    struct statvfs v {};
    if (auto k = msg.find("errno = "); k != std::string::npos && std::atoi(msg.c_str() + k + 8) > 0) {
      why = std::strerror(std::atoi(msg.c_str() + k + 8));
      for (auto& ch : why) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    } else if (::statvfs(out_dir.c_str(), &v) == 0) {
      if (v.f_flag & ST_RDONLY)
        why = "read-only file system";
      else if (static_cast<double>(v.f_bavail) * static_cast<double>(v.f_frsize) < 16.0 * (1 << 20))
        why = "no space left on device";
    }
    if (world.rank() == 0) ::unlink(tmp.c_str());  // never leave a torn file, not even under the temporary name
    if (why.empty()) throw;
    std::string routine = "HDF5";  // the routine that failed, from "PATH: H5Dwrite failed on ..."
    if (auto k = msg.find(" failed"); k != std::string::npos && k > 0) {
      const auto b = msg.rfind(' ', k - 1);
      routine = msg.substr(b == std::string::npos ? 0 : b + 1, k - (b == std::string::npos ? 0 : b + 1));
    }
    throw ResourceError(tmp, "writing the results failed: " + why + " (in " + routine +
                                 "); the partial results are kept: fix that, then rerun with --resume");
  }
  world.barrier();
  // Dimension scales and attributes, by one process on the closed file (deterministic:
  // the same however many ranks wrote it).
  std::string annotate_error;
  if (world.rank() == 0) try {
      annotate_results(tmp);
    } catch (const std::exception& e) {
      annotate_error = first_line(e.what());
      ::unlink(tmp.c_str());
    }
  world.bcast(annotate_error, 0);
  if (!annotate_error.empty())
    throw ResourceError(tmp, "annotating the results failed: " + annotate_error +
                                 "; the partial results are kept: rerun with --resume",
                        /*on_every_rank=*/true);
  fault::at("results.closed");
  // The final name appears only once the file is whole: a crash never leaves a torn results.h5.
  if (world.rank() == 0) {
    std::error_code ec;
    fs::rename(tmp, final_path, ec);
    if (ec) throw_file_error(final_path, "cannot rename " + tmp + " to it", ec.value());
  }
  world.barrier();
  fault::at("results.renamed");
}

}  // namespace sink
