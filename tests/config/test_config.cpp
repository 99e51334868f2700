// Config validation: every error is an InputError whose message is
// "FILE: key 'K': problem"; valid run and sweep configs load with the right
// values; --set overrides; alias bombs and other hostile YAML are refused fast.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "sink/config/config.hpp"
#include "sink/util/error.hpp"

namespace fs = std::filesystem;
using namespace sink;

namespace {

// A valid run config; tests change one line of it.
const std::string kBase =
    "model: Qwen/Qwen3-8B-Base\n"
    "eval_jsonl: data/eval.jsonl\n"
    "out: experiments/qwen3\n";

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    old_cwd_ = fs::current_path();
    dir_ = fs::temp_directory_path() / ("sink_test_config_" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "configs");
    fs::create_directories(dir_ / "data");
    fs::current_path(dir_);  // so paths in messages read as they would for a user
    std::ofstream("data/eval.jsonl") << "{\"id\": 1, \"text\": \"a\"}\n";
    std::ofstream("data/cal.jsonl") << "{\"id\": 1, \"text\": \"b\"}\n";
    std::ofstream("data/mu.h5") << "not really hdf5\n";
  }
  void TearDown() override {
    fs::current_path(old_cwd_);
    fs::remove_all(dir_);
  }

  static void write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }

  static Config load(const std::string& text, const std::vector<std::string>& overrides = {}) {
    write("configs/x.yaml", text);
    return load_config("configs/x.yaml", overrides);
  }

  // The full message of the error that loading `text` throws.
  static std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
    write("configs/x.yaml", text);
    try {
      load_config("configs/x.yaml", overrides);
    } catch (const InputError& e) {
      EXPECT_EQ(e.where(), "configs/x.yaml");
      return e.what();
    }
    ADD_FAILURE() << "no error for:\n" << text;
    return "";
  }

  fs::path old_cwd_, dir_;
};

TEST_F(ConfigTest, TheSpecExampleLoads) {
  Config c = load(
      "model: Qwen/Qwen3-8B-Base\n"
      "eval_jsonl: data/eval.jsonl\n"
      "out: experiments/sink_as_bias/qwen3_8b_base\n"
      "max_total_tokens: 4096\n"
      "dtype: bfloat16            # float32 | bfloat16 | float16\n"
      "device_map: cuda:0\n"
      "layers_to_show: [0, 1, 2, 3, 8, 9, 10, 16, 20, 23, 28, 29, 34, 35]\n"
      "max_tokens_to_show: 32\n"
      "max_tokens_to_calc: 512\n"
      "steps: {basic: true, norms: false, values: true, viz: false}\n");
  EXPECT_EQ(c.path, "configs/x.yaml");
  EXPECT_EQ(c.out, "experiments/sink_as_bias/qwen3_8b_base");
  EXPECT_EQ(c.log_level, "info");
  ASSERT_EQ(c.runs.size(), 1u);
  const RunConfig& r = c.runs[0];
  EXPECT_EQ(r.name, "qwen3-8b-base");
  EXPECT_EQ(r.model, "Qwen/Qwen3-8B-Base");
  EXPECT_EQ(r.eval_jsonl, "data/eval.jsonl");
  EXPECT_EQ(r.max_total_tokens, 4096);
  EXPECT_EQ(r.dtype, "bfloat16");
  EXPECT_EQ(r.device_map, "cuda:0");
  EXPECT_EQ(r.layers_to_show, (std::vector<int>{0, 1, 2, 3, 8, 9, 10, 16, 20, 23, 28, 29, 34, 35}));
  EXPECT_EQ(r.max_tokens_to_show, 32);
  EXPECT_EQ(r.max_tokens_to_calc, 512);
  EXPECT_TRUE(r.step_basic);
  EXPECT_FALSE(r.step_norms);
  EXPECT_TRUE(r.step_values);
  EXPECT_FALSE(r.step_viz);
  EXPECT_FALSE(r.intervention.has_value());
}

TEST_F(ConfigTest, DefaultsAndEveryKey) {
  Config d = load(kBase);
  const RunConfig& r = d.runs[0];
  const RunConfig def;
  EXPECT_EQ(r.eval_field, "text");
  EXPECT_EQ(r.max_docs, 0);
  EXPECT_EQ(r.max_total_tokens, def.max_total_tokens);
  EXPECT_EQ(r.long_documents, "truncate");
  EXPECT_EQ(r.dtype, "float32");
  EXPECT_EQ(r.device_map, "cpu");
  EXPECT_EQ(r.stages, 1);
  EXPECT_TRUE(r.layers_to_show.empty());
  EXPECT_EQ(r.sink_policy, "auto");
  EXPECT_DOUBLE_EQ(r.epsilon, 0.3);
  EXPECT_EQ(r.geometry_sketch, 32);
  EXPECT_EQ(r.top_keys, 8);
  EXPECT_EQ(r.docs_to_show, 4);
  EXPECT_TRUE(r.docs_to_show_ids.empty());
  EXPECT_TRUE(r.step_basic && r.step_norms && r.step_values && r.step_viz);

  Config c = load(kBase +
                  "name: my_run.v2\n"
                  "eval_field: body\n"
                  "max_docs: 10\n"
                  "long_documents: error\n"
                  "device_map: auto\n"
                  "sink_policy: prepend\n"
                  "epsilon: 0.5\n"
                  "geometry_sketch: 8\n"
                  "top_keys: 0\n"
                  "docs_to_show: [doc-7, 12]\n"
                  "log_level: debug\n"
                  "steps: {viz: false}\n"
                  "intervention:\n"
                  "  modes: [ssp_bias, zero, random, ssp_drop]\n"
                  "  granularity: head\n"
                  "  layers: [2, 0]\n"
                  "  calibration_jsonl: data/cal.jsonl\n"
                  "  calibration_docs: 50\n"
                  "  seed: 18446744073709551615\n");
  const RunConfig& s = c.runs[0];
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(s.name, "my_run.v2");
  EXPECT_EQ(s.eval_field, "body");
  EXPECT_EQ(s.max_docs, 10);
  EXPECT_EQ(s.long_documents, "error");
  EXPECT_EQ(s.device_map, "auto");
  EXPECT_EQ(s.sink_policy, "prepend");
  EXPECT_DOUBLE_EQ(s.epsilon, 0.5);
  EXPECT_EQ(s.geometry_sketch, 8);
  EXPECT_EQ(s.top_keys, 0);
  EXPECT_EQ(s.docs_to_show, -1);
  EXPECT_EQ(s.docs_to_show_ids, (std::vector<std::string>{"doc-7", "12"}));
  EXPECT_EQ(load(kBase + "docs_to_show: 2\n").runs[0].docs_to_show, 2);
  EXPECT_TRUE(s.step_basic && s.step_norms && s.step_values);
  EXPECT_FALSE(s.step_viz);
  ASSERT_TRUE(s.intervention.has_value());
  const auto& iv = *s.intervention;
  EXPECT_EQ(iv.modes, (std::vector<std::string>{"ssp_bias", "zero", "random", "ssp_drop"}));
  EXPECT_EQ(iv.granularity, "head");
  EXPECT_EQ(iv.layers, (std::vector<int>{2, 0}));
  EXPECT_EQ(iv.calibration_jsonl, "data/cal.jsonl");
  EXPECT_EQ(iv.calibration_docs, 50);
  EXPECT_EQ(iv.seed, 18446744073709551615ull);
  EXPECT_TRUE(iv.mu_from.empty());

  EXPECT_EQ(load(kBase + "stages: 3\n").runs[0].stages, 3);
  EXPECT_EQ(load(kBase + "stages: auto\n").runs[0].stages, RunConfig::kAutoStages);
  EXPECT_EQ(load(kBase, {"stages=2"}).runs[0].stages, 2);
  Config m = load(kBase + "intervention: {modes: [ssp_drop], mu_from: data/mu.h5}\n");
  EXPECT_EQ(m.runs[0].intervention->mu_from, "data/mu.h5");
  Config z = load(kBase + "intervention: {modes: [zero]}\n");  // zero needs no mu
  EXPECT_EQ(z.runs[0].intervention->modes, std::vector<std::string>{"zero"});
  EXPECT_FALSE(z.runs[0].intervention->window_eval.has_value());

  // window_eval: the defaults keep 0, 1 and 4 tokens and fit both SSP variants.
  Config w = load(kBase +
                  "intervention: {modes: [zero], calibration_jsonl: data/cal.jsonl, "
                  "window_eval: {windows: [64, 1024]}}\n");
  ASSERT_TRUE(w.runs[0].intervention->window_eval.has_value());
  const auto& we = *w.runs[0].intervention->window_eval;
  EXPECT_EQ(we.windows, (std::vector<std::int64_t>{64, 1024}));
  EXPECT_EQ(we.keep, (std::vector<std::int64_t>{0, 1, 4}));
  EXPECT_EQ(we.ssp, (std::vector<std::string>{"ssp_bias", "ssp_drop"}));
  Config w2 = load(kBase + "intervention: {modes: [zero], window_eval: {windows: [8], keep: [2], ssp: []}}\n");
  EXPECT_EQ(w2.runs[0].intervention->window_eval->keep, (std::vector<std::int64_t>{2}));
  EXPECT_TRUE(w2.runs[0].intervention->window_eval->ssp.empty());  // no μ_W: no calibration needed
}

TEST_F(ConfigTest, NameFromModel) {
  auto name = [&](const std::string& model) {
    return load("model: '" + model + "'\neval_jsonl: data/eval.jsonl\nout: o\n").runs[0].name;
  };
  EXPECT_EQ(name("Qwen/Qwen3-8B-Base"), "qwen3-8b-base");
  EXPECT_EQ(name("/models/Llama-2 7b (HF)/"), "llama-2_7b__hf_");
  EXPECT_EQ(name("stories260K.gguf"), "stories260k.gguf");
  EXPECT_EQ(name("m\xC3\xA9t\xC3\xA9o"), "m__t__o");
  EXPECT_EQ(error_of("model: /\neval_jsonl: data/eval.jsonl\nout: o\n"),
            "configs/x.yaml: key 'name': cannot derive a name from model '/'; set name");
}

struct Case {
  std::string yaml;
  std::string message;  // after "configs/x.yaml: "
};

TEST_F(ConfigTest, EveryErrorNamesKeyAndFile) {
  const std::string m = "model: m\n", e = "eval_jsonl: data/eval.jsonl\n", o = "out: o\n";
  const Case cases[] = {
      {kBase + "steps: {basic: yes}\n", "key 'steps.basic': expected true or false"},
      {kBase + "steps: {basic: 1}\n", "key 'steps.basic': expected true or false"},
      {kBase + "steps: {basic: 'true'}\n", "key 'steps.basic': expected true or false"},
      {kBase + "steps: {basic: true, vis: true}\n", "key 'steps.vis': unknown key (did you mean 'viz'?)"},
      {kBase + "steps: [basic]\n", "key 'steps': expected a map of steps (basic, norms, values, viz)"},
      {kBase + "modle: x\n", "key 'modle': unknown key (did you mean 'model'?)"},
      {kBase + "colour: red\n", "key 'colour': unknown key"},
      {kBase + "max_total_tokens: '4096'\n", "key 'max_total_tokens': expected an integer"},
      {kBase + "max_total_tokens: 4k\n", "key 'max_total_tokens': expected an integer"},
      {kBase + "max_total_tokens: 4096.5\n", "key 'max_total_tokens': expected an integer"},
      {kBase + "max_total_tokens: 99999999999999999999\n", "key 'max_total_tokens': expected an integer"},
      {kBase + "max_total_tokens: 0\n", "key 'max_total_tokens': expected a positive integer, got 0"},
      {kBase + "max_docs: -1\n", "key 'max_docs': expected a non-negative integer, got -1"},
      {kBase + "max_tokens_to_show: -3\n", "key 'max_tokens_to_show': expected a positive integer, got -3"},
      {kBase + "geometry_sketch: [1]\n", "key 'geometry_sketch': expected an integer"},
      {kBase + "top_keys: -1\n", "key 'top_keys': expected a non-negative integer, got -1"},
      {kBase + "docs_to_show: -2\n", "key 'docs_to_show': expected a non-negative integer, got -2"},
      {kBase + "max_tokens_to_show: 600\n",
       "key 'max_tokens_to_show': must not exceed max_tokens_to_calc (512), got 600"},
      {kBase + "max_tokens_to_calc: 16\n", "key 'max_tokens_to_show': must not exceed max_tokens_to_calc (16), got 32"},
      {kBase + "layers_to_show: [0, a]\n",
       "key 'layers_to_show': expected a list of layer indices (integers >= 0), got 'a'"},
      {kBase + "layers_to_show: [0, -1]\n",
       "key 'layers_to_show': expected a list of layer indices (integers >= 0), got '-1'"},
      {kBase + "layers_to_show: [0, [1]]\n",
       "key 'layers_to_show': expected a list of layer indices (integers >= 0), got 'a list or map'"},
      {kBase + "layers_to_show: 3\n", "key 'layers_to_show': expected a list of layer indices (integers >= 0)"},
      {kBase + "layers_to_show: [1, 2, 1]\n", "key 'layers_to_show': layer 1 is listed twice"},
      {kBase + "dtype: fp32\n", "key 'dtype': expected float32, bfloat16 or float16, got 'fp32'"},
      {kBase + "dtype: [float32]\n", "key 'dtype': expected float32, bfloat16 or float16"},
      {kBase + "device_map: gpu\n", "key 'device_map': expected cpu, cuda:N or auto, got 'gpu'"},
      {kBase + "device_map: 'cuda:'\n", "key 'device_map': expected cpu, cuda:N or auto, got 'cuda:'"},
      {kBase + "device_map: cuda:x\n", "key 'device_map': expected cpu, cuda:N or auto, got 'cuda:x'"},
      {kBase + "stages: 0\n", "key 'stages': expected an integer >= 1 or auto, got '0'"},
      {kBase + "stages: -2\n", "key 'stages': expected an integer >= 1 or auto, got '-2'"},
      {kBase + "stages: 2.5\n", "key 'stages': expected an integer >= 1 or auto, got '2.5'"},
      {kBase + "stages: Auto\n", "key 'stages': expected an integer >= 1 or auto, got 'Auto'"},
      {kBase + "stages: [2]\n", "key 'stages': expected an integer >= 1 or auto, got 'a list or map'"},
      {kBase + "sink_policy: last\n", "key 'sink_policy': expected auto, bos, prepend or first, got 'last'"},
      {kBase + "epsilon: 1\n", "key 'epsilon': expected a number between 0 and 1 (both excluded), got 1"},
      {kBase + "epsilon: 0.0\n", "key 'epsilon': expected a number between 0 and 1 (both excluded), got 0.0"},
      {kBase + "epsilon: -0.5\n", "key 'epsilon': expected a number between 0 and 1 (both excluded), got -0.5"},
      {kBase + "epsilon: .nan\n", "key 'epsilon': expected a number"},
      {kBase + "epsilon: high\n", "key 'epsilon': expected a number"},
      {kBase + "long_documents: drop\n", "key 'long_documents': expected truncate or error, got 'drop'"},
      {kBase + "log_level: loud\n",
       "key 'log_level': expected trace, debug, info, warn, error, critical or off, got 'loud'"},
      {kBase + "name: 'a b'\n", "key 'name': expected a name of letters, digits, '_', '.' and '-', got 'a b'"},
      {kBase + "name: '..'\n", "key 'name': expected a name of letters, digits, '_', '.' and '-', got '..'"},
      {kBase + "eval_field: ''\n", "key 'eval_field': expected a field name"},
      {kBase + "intervention: {modes: [zero], granularity: block}\n",
       "key 'intervention.granularity': expected layer or head, got 'block'"},
      {kBase + "intervention: {modes: [zero, zero]}\n", "key 'intervention.modes': mode 'zero' is listed twice"},
      {kBase + "intervention: {modes: []}\n",
       "key 'intervention.modes': expected at least one mode (ssp_bias, ssp_drop, zero or random)"},
      {kBase + "intervention: {modes: [patch]}\n",
       "key 'intervention.modes': expected a list of modes (ssp_bias, ssp_drop, zero or random), got "
       "'patch'"},
      {kBase + "intervention: {modes: zero}\n",
       "key 'intervention.modes': expected a list of modes (ssp_bias, ssp_drop, zero or random)"},
      {kBase + "intervention: {granularity: layer}\n", "key 'intervention.modes': required key is missing"},
      {kBase + "intervention: {modes: [zero], mode: zero}\n",
       "key 'intervention.mode': unknown key (did you mean 'modes'?)"},
      {kBase + "intervention: [zero]\n", "key 'intervention': expected a map of intervention keys"},
      {kBase + "intervention: {modes: [zero], layers: [x]}\n",
       "key 'intervention.layers': expected a list of layer indices (integers >= 0), got 'x'"},
      {kBase + "intervention: {modes: [zero], calibration_docs: -2}\n",
       "key 'intervention.calibration_docs': expected a non-negative integer, got -2"},
      {kBase + "intervention: {modes: [zero], seed: -1}\n", "key 'intervention.seed': expected a non-negative integer"},
      {kBase + "intervention: {modes: [zero, ssp_bias]}\n",
       "key 'intervention.calibration_jsonl': mode 'ssp_bias' needs mu: give calibration_jsonl (to fit it) "
       "or "
       "mu_from (to load it)"},
      {kBase + "intervention: {modes: [random], calibration_jsonl: data/none.jsonl}\n",
       "key 'intervention.calibration_jsonl': no such file 'data/none.jsonl'"},
      {kBase + "intervention: {modes: [random], calibration_jsonl: data/eval.jsonl}\n",
       "key 'intervention.calibration_jsonl': is the evaluation set itself; calibration documents must not "
       "be "
       "evaluated"},
      {kBase + "intervention: {modes: [ssp_bias], mu_from: data/none.h5}\n",
       "key 'intervention.mu_from': no such file 'data/none.h5'"},
      {kBase + "intervention: {modes: [ssp_bias], mu_from: data}\n",
       "key 'intervention.mu_from': 'data' is a folder, expected a file"},
      {kBase + "intervention: {modes: [zero], window_eval: {windows: [8, -8]}}\n",
       "key 'intervention.window_eval.windows': expected a list of windows (integers > 0), got '-8'"},
      {kBase + "intervention: {modes: [zero], window_eval: {windows: [8, 8], ssp: []}}\n",
       "key 'intervention.window_eval.windows': 8 is listed twice"},
      {kBase + "intervention: {modes: [zero], window_eval: {windows: [], ssp: []}}\n",
       "key 'intervention.window_eval.windows': expected at least one window"},
      {kBase + "intervention: {modes: [zero], window_eval: {keep: [0]}}\n",
       "key 'intervention.window_eval.windows': required key is missing"},
      {kBase + "intervention: {modes: [zero], window_eval: {windows: [8], keep: [-1], ssp: []}}\n",
       "key 'intervention.window_eval.keep': expected a list of kept first tokens (integers >= 0), got '-1'"},
      {kBase + "intervention: {modes: [zero], window_eval: {windows: [8], ssp: [random]}}\n",
       "key 'intervention.window_eval.ssp': expected a list of SSP variants (ssp_bias or ssp_drop), got 'random'"},
      {kBase + "intervention: {modes: [zero], window_eval: {windows: [8], keep: [], ssp: []}}\n",
       "key 'intervention.window_eval': expected at least one variant (keep or ssp)"},
      {kBase + "intervention: {modes: [zero], window_eval: {windows: [8], sinks: [1]}}\n",
       "key 'intervention.window_eval.sinks': unknown key"},
      {kBase + "intervention: {modes: [zero], window_eval: {windows: [8]}}\n",
       "key 'intervention.window_eval': its ssp variants fit mu under each window: give calibration_jsonl (mu_from "
       "holds no windowed mu)"},
      {kBase + "intervention: {modes: [ssp_bias], mu_from: data/mu.h5, calibration_jsonl: data/cal.jsonl}\n",
       "key 'intervention.mu_from': give calibration_jsonl (to fit mu) or mu_from (to load it), not both"},
      {e + o, "key 'model': required key is missing"},
      {m + o, "key 'eval_jsonl': required key is missing"},
      {m + e, "key 'out': required key is missing"},
      {m + e + "out: ''\n", "key 'out': expected an output folder"},
      {m + e + "out: [a]\n", "key 'out': expected an output folder"},
      {m + o + "eval_jsonl: data/none.jsonl\n", "key 'eval_jsonl': no such file 'data/none.jsonl'"},
      {m + o + "eval_jsonl:\n", "key 'eval_jsonl': expected a file path"},
      {e + o + "model: ~\n", "key 'model': expected a model path or Hugging Face id"},
      {kBase + "dtype: float32\ndtype: float16\n", "key 'dtype': given twice"},
      {"- model: m\n", "expected a map of keys at the top level"},
      {"# nothing but a comment\n", "is empty"},
      {"", "is empty"},
      {kBase + "---\n" + kBase, "holds 2 YAML documents, expected one"},
      // yaml-cpp 0.7 loops forever on a ',' outside a flow collection (found by fuzz/fuzz_config_yaml).
      {",", "not valid YAML: line 1, column 1: unexpected ','"},
      {"# c\n  ,x\n", "not valid YAML: line 2, column 3: unexpected ','"},
  };
  for (const auto& c : cases) EXPECT_EQ(error_of(c.yaml), "configs/x.yaml: " + c.message) << c.yaml;
}

TEST_F(ConfigTest, FileErrors) {
  try {
    load_config("configs/none.yaml");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), "configs/none.yaml: no such file");
  }
  try {
    load_config("configs");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), "configs: is a folder, expected a YAML file");
  }
  std::string msg = error_of("model: [unclosed\n");
  EXPECT_EQ(msg.rfind("configs/x.yaml: not valid YAML: line ", 0), 0u) << msg;
  msg = error_of(kBase + "\tdtype: x\n");
  EXPECT_EQ(msg.rfind("configs/x.yaml: not valid YAML: line 4", 0), 0u) << msg;
}

TEST_F(ConfigTest, Sweep) {
  Config c = load(
      "out: experiments/sweep\n"
      "log_level: warn\n"
      "defaults:\n"
      "  eval_jsonl: data/eval.jsonl\n"
      "  dtype: bfloat16\n"
      "  layers_to_show: &L [0, 1]\n"
      "  steps: {viz: false, norms: false}\n"
      "runs:\n"
      "  - model: Qwen/Qwen3-8B-Base\n"
      "  - model: meta-llama/Llama-2-7b-hf\n"
      "    name: llama2\n"
      "    dtype: float16\n"
      "    steps: {viz: true}\n"
      "    layers_to_show: *L\n"
      "    intervention: {modes: [zero]}\n");
  EXPECT_EQ(c.out, "experiments/sweep");
  EXPECT_EQ(c.log_level, "warn");
  ASSERT_EQ(c.runs.size(), 2u);
  EXPECT_EQ(c.runs[0].name, "qwen3-8b-base");
  EXPECT_EQ(c.runs[0].dtype, "bfloat16");
  EXPECT_EQ(c.runs[0].eval_jsonl, "data/eval.jsonl");
  EXPECT_FALSE(c.runs[0].step_viz);
  EXPECT_FALSE(c.runs[0].step_norms);
  EXPECT_FALSE(c.runs[0].intervention.has_value());
  EXPECT_EQ(c.runs[1].name, "llama2");
  EXPECT_EQ(c.runs[1].model, "meta-llama/Llama-2-7b-hf");
  EXPECT_EQ(c.runs[1].dtype, "float16");
  EXPECT_TRUE(c.runs[1].step_viz);     // the run's steps merge over the defaults' steps
  EXPECT_FALSE(c.runs[1].step_norms);  // ... key by key
  EXPECT_EQ(c.runs[1].layers_to_show, (std::vector<int>{0, 1}));
  EXPECT_TRUE(c.runs[1].intervention.has_value());

  // No defaults at all.
  Config n = load(
      "out: o\nruns:\n  - {model: a, eval_jsonl: data/eval.jsonl}\n  - {model: b, eval_jsonl: "
      "data/eval.jsonl}\n");
  EXPECT_EQ(n.runs.size(), 2u);
}

TEST_F(ConfigTest, SweepErrors) {
  const std::string head = "out: o\ndefaults: {eval_jsonl: data/eval.jsonl}\nruns:\n";
  const Case cases[] = {
      {head + "  - {model: a/m}\n  - {model: b/m}\n",
       "key 'runs.1.name': name 'm' (derived from the model) is used by runs.0 too; give each run a distinct "
       "name"},
      {head + "  - {model: a, name: x}\n  - {model: b, name: x}\n",
       "key 'runs.1.name': name 'x' is used by runs.0 too; give each run a distinct name"},
      {head + "  - {model: a}\n  - {model: b, dtype: f8}\n",
       "key 'runs.1.dtype': expected float32, bfloat16 or float16, got 'f8'"},
      {head + "  - {model: a}\n  - {eval_jsonl: data/eval.jsonl}\n",
       "key 'runs.1.model': required key is missing"},
      {head + "  - {model: a, steps: {basic: no}}\n", "key 'runs.0.steps.basic': expected true or false"},
      {head + "  - {model: a, out: x}\n",
       "key 'runs.0.out': set once, at the top level of a sweep config, not per run"},
      {head + "  - {model: a, log_level: info}\n",
       "key 'runs.0.log_level': set once, at the top level of a sweep config, not per run"},
      {head + "  - model\n", "key 'runs.0': expected a map of run keys"},
      {"out: o\ndefaults: {eval_jsonl: data/eval.jsonl, dtype: f8}\nruns:\n  - {model: a}\n",
       "key 'defaults.dtype': expected float32, bfloat16 or float16, got 'f8'"},
      {"out: o\ndefaults: {eval_jsonl: data/eval.jsonl, dtyp: float32}\nruns:\n  - {model: a, dtype: "
       "float16}\n",
       "key 'defaults.dtyp': unknown key (did you mean 'dtype'?)"},
      {"out: o\ndefaults: [1]\nruns:\n  - {model: a}\n", "key 'defaults': expected a map of run keys"},
      {"out: o\nruns: []\n", "key 'runs': expected a non-empty list of runs"},
      {"out: o\nruns: {model: a}\n", "key 'runs': expected a non-empty list of runs"},
      {"runs:\n  - {model: a, eval_jsonl: data/eval.jsonl}\n", "key 'out': required key is missing"},
      {"out: o\nmodel: a\nruns:\n  - {model: a, eval_jsonl: data/eval.jsonl}\n",
       "key 'model': unknown key in a sweep config; run keys go under defaults: or into each entry of runs:"},
  };
  for (const auto& c : cases) EXPECT_EQ(error_of(c.yaml), "configs/x.yaml: " + c.message) << c.yaml;
}

TEST_F(ConfigTest, SetOverrides) {
  Config c = load(kBase + "steps: {basic: true}\n",
                  {"steps.viz=false", "dtype=bfloat16", "layers_to_show=[3, 4]", "name=\"2024\"",
                   "intervention.modes=[zero,ssp_bias]", "intervention.calibration_jsonl=data/cal.jsonl",
                   "max_tokens_to_show=8", "out=elsewhere"});
  const RunConfig& r = c.runs[0];
  EXPECT_FALSE(r.step_viz);
  EXPECT_TRUE(r.step_basic);
  EXPECT_EQ(r.dtype, "bfloat16");
  EXPECT_EQ(r.layers_to_show, (std::vector<int>{3, 4}));
  EXPECT_EQ(r.name, "2024");
  EXPECT_EQ(r.max_tokens_to_show, 8);
  EXPECT_EQ(c.out, "elsewhere");
  ASSERT_TRUE(r.intervention.has_value());
  EXPECT_EQ(r.intervention->modes, (std::vector<std::string>{"zero", "ssp_bias"}));

  // The text is the config after the overrides, and loads to the same values.
  EXPECT_NE(c.text.find("bfloat16"), std::string::npos) << c.text;
  EXPECT_NE(c.text.find("\"2024\""), std::string::npos) << c.text;  // still a string
  Config again = load(c.text);
  EXPECT_EQ(again.text, c.text);
  EXPECT_EQ(again.runs[0].name, "2024");
  EXPECT_EQ(again.runs[0].intervention->modes, r.intervention->modes);
  EXPECT_EQ(again.out, "elsewhere");

  // Into a sweep's list; an alias shared by two runs is changed in one only.
  Config s = load(
      "out: o\n"
      "runs:\n"
      "  - &r {model: m, name: a, eval_jsonl: data/eval.jsonl}\n"
      "  - {model: m, name: b, eval_jsonl: data/eval.jsonl, layers_to_show: [1]}\n",
      {"runs.1.dtype=float16", "runs.1.layers_to_show.0=7", "defaults.sink_policy=first"});
  EXPECT_EQ(s.runs[0].dtype, "float32");
  EXPECT_EQ(s.runs[1].dtype, "float16");
  EXPECT_EQ(s.runs[1].layers_to_show, std::vector<int>{7});
  EXPECT_EQ(s.runs[0].sink_policy, "first");
}

TEST_F(ConfigTest, SetErrors) {
  const std::string p = "configs/x.yaml: ";
  EXPECT_EQ(error_of(kBase, {"colour=red"}), p + "key 'colour': unknown key (given by --set)");
  EXPECT_EQ(error_of(kBase, {"dtyp=float16"}),
            p + "key 'dtyp': unknown key (did you mean 'dtype'?) (given by --set)");
  EXPECT_EQ(error_of(kBase, {"steps.colour=true"}), p + "key 'steps.colour': unknown key (given by --set)");
  EXPECT_EQ(error_of(kBase, {"steps.basic=yes"}),
            p + "key 'steps.basic': expected true or false (given by --set)");
  EXPECT_EQ(error_of(kBase, {"foo.bar=1"}), p + "key 'foo': unknown key (given by --set)");
  EXPECT_EQ(error_of(kBase, {"model.x=1"}),
            p + "key 'model.x': unknown key ('model' is not a map) (given by --set)");
  EXPECT_EQ(error_of(kBase, {"intervention.modes=[zero,zero]"}),
            p + "key 'intervention.modes': mode 'zero' is listed twice (given by --set)");
  EXPECT_EQ(error_of(kBase, {"dtype"}), p + "--set 'dtype': expected KEY=VALUE");
  EXPECT_EQ(error_of(kBase, {"=x"}), p + "--set '=x': expected KEY=VALUE");
  EXPECT_EQ(error_of(kBase, {"steps..viz=true"}),
            p + "--set 'steps..viz=true': a key is names joined by dots, e.g. steps.viz");
  EXPECT_EQ(error_of(kBase, {"max_docs="}), p + "key 'max_docs': expected an integer (given by --set)");
  std::string msg = error_of(kBase, {"layers_to_show=[1"});
  EXPECT_EQ(msg.rfind(p + "--set layers_to_show: value is not valid YAML", 0), 0u) << msg;
  const std::string sweep = "out: o\nruns:\n  - {model: m, eval_jsonl: data/eval.jsonl}\n";
  EXPECT_EQ(error_of(sweep, {"runs.3.dtype=float16"}),
            p + "key 'runs.3': no such entry; 'runs' has 1 entries (given by --set)");
  EXPECT_EQ(error_of(sweep, {"runs.x.dtype=float16"}),
            p + "key 'runs.x': 'runs' is a list; expected an index into it (given by --set)");
  EXPECT_EQ(
      error_of(sweep, {"dtype=float16"}),
      p + "key 'dtype': unknown key in a sweep config; run keys go under defaults: or into each entry of "
          "runs: (given by --set)");
}

TEST_F(ConfigTest, AliasBombIsRefusedQuickly) {
  // "Billion laughs": 9 levels of 10 aliases each expand to 10^9 values.
  std::ostringstream os;
  os << kBase << "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    os << "a" << i << ": &a" << i << " [";
    for (int k = 0; k < 10; ++k) os << (k ? ", *a" : "*a") << i - 1;
    os << "]\n";
  }
  const std::string bomb = os.str();
  auto t0 = std::chrono::steady_clock::now();
  std::string msg = error_of(bomb);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(msg.find("an alias bomb?"), std::string::npos) << msg;
  EXPECT_LT(s, 5.0);

  // The same through --set.
  msg = error_of(kBase, {"layers_to_show=" + bomb.substr(kBase.size())});
  EXPECT_NE(msg.find("an alias bomb?"), std::string::npos) << msg;

  // Few values, but one long scalar referenced 200,000 times (1.2 GB once expanded;
  // found in review while chasing an out-of-memory of fuzz/fuzz_config_yaml).
  std::ostringstream wide;
  wide << kBase << "long: &a \"" << std::string(6000, 'x') << "\"\n";
  const char* levels[][2] = {{"ten: &b [", "*a"}, {"hundred: &c [", "*b"}, {"thousand: &d [", "*c"}};
  for (const auto& [head, ref] : levels) {
    wide << head;
    for (int k = 0; k < 10; ++k) wide << (k ? ", " : "") << ref;
    wide << "]\n";
  }
  wide << "more: [";
  for (int k = 0; k < 200; ++k) wide << (k ? ", *d" : "*d");
  wide << "]\n";
  t0 = std::chrono::steady_clock::now();
  msg = error_of(wide.str());
  s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(msg.find("MiB of text once aliases are expanded (an alias bomb?)"), std::string::npos) << msg;
  EXPECT_LT(s, 5.0);

  // A sequence that contains itself.
  msg = error_of(kBase + "layers_to_show: &s [1, *s]\n");
  EXPECT_NE(msg.find("nested deeper than 64 levels"), std::string::npos) << msg;

  // Deep nesting without aliases (yaml-cpp's own depth guard or ours).
  msg = error_of(kBase + "layers_to_show: " + std::string(100000, '[') + std::string(100000, ']') + "\n");
  EXPECT_TRUE(msg.find("nested deeper") != std::string::npos ||
              msg.find("not valid YAML") != std::string::npos)
      << msg.substr(0, 200);

  // Too large to be a config.
  msg = error_of(kBase + "# " + std::string(5u << 20, 'x') + "\n");
  EXPECT_EQ(msg, "configs/x.yaml: larger than 4 MiB; not a config file");
}

TEST_F(ConfigTest, ModestAliasesAreFine) {
  Config c = load(kBase + "layers_to_show: &L [0, 5]\nintervention: {modes: [zero], layers: *L}\n");
  EXPECT_EQ(c.runs[0].intervention->layers, (std::vector<int>{0, 5}));

  // YAML merge keys: the map's own keys win, then earlier merged maps.
  Config s = load(
      "out: o\n"
      "runs:\n"
      "  - &one {model: a, eval_jsonl: data/eval.jsonl, dtype: bfloat16, name: one, max_docs: 3}\n"
      "  - &two {model: b, eval_jsonl: data/eval.jsonl, name: two, sink_policy: first}\n"
      "  - {<<: *one, name: three, dtype: float16}\n"
      "  - {<<: [*two, *one], name: four}\n");
  ASSERT_EQ(s.runs.size(), 4u);
  EXPECT_EQ(s.runs[2].model, "a");
  EXPECT_EQ(s.runs[2].dtype, "float16");
  EXPECT_EQ(s.runs[2].max_docs, 3);
  EXPECT_EQ(s.runs[3].model, "b");
  EXPECT_EQ(s.runs[3].sink_policy, "first");
  EXPECT_EQ(s.runs[3].dtype, "bfloat16");
  EXPECT_EQ(s.runs[3].name, "four");
  EXPECT_EQ(error_of(kBase + "<<: 5\n"),
            "configs/x.yaml: key '<<': a merge key takes a map or a list of maps");
}

}  // namespace
