// sink-run configs (YAML). The seed's keys keep their meaning; everything is
// validated before any model loads, and errors name the key and the file.
//
// A run config has the keys below at top level. A sweep config has `out`
// plus `runs:`, a list of run configs (each with its own `name`), and
// optional `defaults:` merged under every run.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sink {

// intervention.window_eval: attention restricted to the W most recent keys (docs/metrics.md,
// "Windowed attention without the sink").
struct WindowEvalConfig {
  std::vector<std::int64_t> windows;                        // W > 0 each
  std::vector<std::int64_t> keep = {0, 1, 4};               // first tokens kept as keys
  std::vector<std::string> ssp = {"ssp_bias", "ssp_drop"};  // μ (and ᾱ) fitted under each window
};

struct InterventionConfig {
  std::vector<std::string> modes;            // ssp_bias | ssp_drop | zero | random (several share one original pass)
  std::string granularity = "layer";         // layer | head
  std::vector<int> layers;                   // empty = all layers
  std::string calibration_jsonl;             // calibration documents (disjoint from eval docs)
  std::int64_t calibration_docs = 0;         // use the first N of them; 0 = all
  std::string mu_from;                       // load μ (and ᾱ) from this results.h5 instead of fitting
  std::uint64_t seed = 0;                    // for the `random` control
  std::optional<WindowEvalConfig> window_eval;
};

struct RunConfig {
  std::string name;                          // group name in results.h5, [A-Za-z0-9_.-]+
  std::string model;                         // local path or HF id
  std::string eval_jsonl;
  std::string eval_field = "text";
  std::int64_t max_docs = 0;                 // 0 = all documents of the eval set
  std::int64_t max_total_tokens = 4096;
  std::string long_documents = "truncate";   // truncate | error: a document longer than max_total_tokens
  std::string dtype = "float32";             // float32 | bfloat16 | float16
  std::string device_map = "cpu";            // cpu | cuda:N | auto
  static constexpr int kAutoStages = 0;
  int stages = 1;                            // pipeline stages per group; kAutoStages = auto
  std::vector<int> layers_to_show;
  std::int64_t max_tokens_to_show = 32;      // S
  std::int64_t max_tokens_to_calc = 512;     // P (= T_c cap)
  bool step_basic = true, step_norms = true, step_values = true, step_viz = true;
  std::string sink_policy = "auto";          // auto | bos | prepend | first
  double epsilon = 0.3;                      // sink-rate threshold
  std::int64_t geometry_sketch = 32;         // PCA sketch width for large d (see docs/metrics.md)
  std::int64_t top_keys = 8;                 // k: keys kept per (l, h) by attention mass over all j < T_c
  std::int64_t docs_to_show = 4;             // per-document attention maps: the first n documents,
  std::vector<std::string> docs_to_show_ids; // or (docs_to_show = -1) these document ids
  std::optional<InterventionConfig> intervention;
};

struct Config {
  std::string path;                          // the YAML file
  std::string text;                          // its text after --set overrides (stored in results.h5)
  std::string resume_text;                   // the same without `stages`: what --resume checks partial results against
  std::string out;                           // output folder; results.h5 goes there
  std::vector<RunConfig> runs;               // one for a run config, several for a sweep
  std::string log_level = "info";
};

// Loads and validates. `overrides` are --set key=value pairs (dotted keys
// reach into maps: intervention.modes=[zero,ssp_bias], runs.0.dtype=...).
// Relative paths in the config are resolved against the current directory.
// Throws InputError("FILE: key 'k': problem").
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

}  // namespace sink
