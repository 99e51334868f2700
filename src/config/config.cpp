// Config loading: YAML -> a small owned tree (aliases expanded, bounded) ->
// --set overrides -> validation into RunConfig. Working on our own tree, not
// on yaml-cpp's nodes, gives every value its dotted key path for messages,
// keeps quoted scalars distinguishable from numbers, and lets an override
// touch one run without reaching other runs through a shared alias.
#include "sink/config/config.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>

#include "sink/util/error.hpp"

namespace sink {
namespace {

namespace fs = std::filesystem;

// Configs are a few kilobytes; these bounds only stop hostile or broken input
// (alias "billion laughs", self-referencing anchors, megabytes of nesting).
constexpr std::size_t kMaxConfigBytes = 4u << 20;
constexpr std::size_t kMaxOverrideBytes = 1u << 20;
constexpr std::size_t kMaxNodes = 1'000'000;  // counted with aliases expanded
constexpr std::size_t kMaxExpandedBytes = 64u << 20;  // scalars, keys and key paths, aliases expanded
constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxRunName = 200;  // + ".calibration" and temporary suffixes stay under NAME_MAX

struct Entry;

struct Node {
  enum class Kind { Null, Scalar, Seq, Map };
  Kind kind = Kind::Null;
  std::string scalar;
  bool plain = true;      // an unquoted, untagged scalar: may be read as a number or a bool
  bool from_set = false;  // given by --set (said in messages, since the file does not show it)
  std::string path;       // dotted key path, e.g. "runs.1.steps.basic"
  std::vector<Node> seq;
  std::vector<Entry> map;  // in file order

  Node* find(std::string_view key);
  const Node* find(std::string_view key) const { return const_cast<Node*>(this)->find(key); }
};

struct Entry {
  std::string key;
  Node value;
};

Node* Node::find(std::string_view key) {
  for (auto& e : map)
    if (e.key == key) return &e.value;
  return nullptr;
}

std::string join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

void assign_paths(Node& n, const std::string& path) {
  n.path = path;
  for (std::size_t i = 0; i < n.seq.size(); ++i) assign_paths(n.seq[i], join(path, std::to_string(i)));
  for (auto& e : n.map) assign_paths(e.value, join(path, e.key));
}

void mark_from_set(Node& n) {
  n.from_set = true;
  for (auto& c : n.seq) mark_from_set(c);
  for (auto& e : n.map) mark_from_set(e.value);
}

// clang-format off
const std::vector<std::string> kRunKeys = {
    "name", "model", "eval_jsonl", "eval_field", "max_docs", "max_total_tokens", "long_documents", "dtype",
    "device_map", "layers_to_show", "max_tokens_to_show", "max_tokens_to_calc", "steps", "sink_policy",
    "epsilon", "geometry_sketch", "intervention", "top_keys", "docs_to_show", "stages"};
// clang-format on
const std::vector<std::string> kConfigKeys = {"out", "log_level"};  // once per file
const std::vector<std::string> kSweepKeys = {"out", "log_level", "defaults", "runs"};
const std::vector<std::string> kStepKeys = {"basic", "norms", "values", "viz"};
const std::vector<std::string> kInterventionKeys = {
    "modes", "granularity", "layers", "calibration_jsonl", "calibration_docs", "mu_from", "seed", "window_eval"};
const std::vector<std::string> kWindowEvalKeys = {"windows", "keep", "ssp"};
const std::vector<std::string> kWindowSsp = {"ssp_bias", "ssp_drop"};
const std::vector<std::string> kModes = {"ssp_bias", "ssp_drop", "zero", "random"};
const std::vector<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "a, b or c"
std::string one_of(const std::vector<std::string>& xs) {
  std::string s;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (i) s += i + 1 == xs.size() ? " or " : ", ";
    s += xs[i];
  }
  return s;
}

bool contains(const std::vector<std::string>& xs, std::string_view x) {
  return std::find(xs.begin(), xs.end(), x) != xs.end();
}

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail_file(const std::string& problem) const { throw InputError(file_, problem); }
  [[noreturn]] void fail_key(const std::string& path, const std::string& problem,
                             bool from_set = false) const {
    throw InputError(file_, "key '" + path + "': " + problem + (from_set ? " (given by --set)" : ""));
  }
  [[noreturn]] void fail(const Node& n, const std::string& problem) const {
    fail_key(n.path, problem, n.from_set);
  }

  // ---- YAML -> Node ---------------------------------------------------------

  // Counts nodes, and the bytes of their scalars, keys and dotted key paths,
  // as a walk with aliases expanded would visit them, without allocating: an
  // alias bomb (many nodes, or one long scalar or key referenced many times)
  // is refused before anything is copied.
  struct Budget {
    std::size_t nodes = 0, bytes = 0;
  };
  void count(const YAML::Node& y, int depth, Budget& b, std::size_t path_len, const std::string& what) const {
    if (++b.nodes > kMaxNodes)
      fail_file(what + ": more than " + std::to_string(kMaxNodes) +
                " values once aliases are expanded (an alias bomb?)");
    if (depth > kMaxDepth)
      fail_file(what + ": nested deeper than " + std::to_string(kMaxDepth) +
                " levels (a self-referencing alias?)");
    b.bytes += path_len + (y.IsScalar() ? y.Scalar().size() : 0);
    if (b.bytes > kMaxExpandedBytes)
      fail_file(what + ": more than " + std::to_string(kMaxExpandedBytes >> 20) +
                " MiB of text once aliases are expanded (an alias bomb?)");
    if (y.IsSequence()) {
      std::size_t i = 0;
      for (const auto& c : y) count(c, depth + 1, b, path_len + 1 + std::to_string(i++).size(), what);
    } else if (y.IsMap()) {
      for (const auto& kv : y) {
        count(kv.first, depth + 1, b, 0, what);
        const std::size_t key_len = kv.first.IsScalar() ? kv.first.Scalar().size() : 0;
        count(kv.second, depth + 1, b, path_len + 1 + key_len, what);
      }
    }
  }

  Node convert(const YAML::Node& y, const std::string& path) const {
    Node n;
    n.path = path;
    switch (y.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        break;
      case YAML::NodeType::Scalar:
        n.kind = Node::Kind::Scalar;
        n.scalar = y.Scalar();
        n.plain = y.Tag() == "?";
        break;
      case YAML::NodeType::Sequence:
        n.kind = Node::Kind::Seq;
        for (const auto& c : y) n.seq.push_back(convert(c, join(path, std::to_string(n.seq.size()))));
        break;
      case YAML::NodeType::Map:
        n.kind = Node::Kind::Map;
        for (const auto& kv : y) {
          if (!kv.first.IsScalar()) fail_key(path.empty() ? "(top level)" : path, "keys must be plain names");
          std::string key = kv.first.Scalar();
          if (key == "<<" && kv.first.Tag() == "?") continue;  // merged below
          if (n.find(key)) fail_key(join(path, key), "given twice");
          n.map.push_back({key, convert(kv.second, join(path, key))});
        }
        // YAML merge keys (`<<: *common` or `<<: [*a, *b]`): keys of the map
        // itself win, then earlier merged maps over later ones.
        if (auto m = y["<<"]; m && m.IsDefined() && !m.IsNull()) {
          std::vector<YAML::Node> sources;
          if (m.IsMap()) sources.push_back(m);
          if (m.IsSequence())
            for (const auto& s : m) sources.push_back(s);
          if (sources.empty()) fail_key(join(path, "<<"), "a merge key takes a map or a list of maps");
          for (const auto& src : sources) {
            if (!src.IsMap()) fail_key(join(path, "<<"), "a merge key takes a map or a list of maps");
            Node part = convert(src, path);
            for (auto& e : part.map)
              if (!n.find(e.key)) n.map.push_back(std::move(e));
          }
        }
        break;
    }
    return n;
  }

  // Where each YAML document starts (yaml-cpp's event parser, nothing built).
  struct DocumentStarts : YAML::EventHandler {
    std::vector<YAML::Mark> marks;
    void OnDocumentStart(const YAML::Mark& m) override { marks.push_back(m); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  };

  YAML::Node parse(const std::string& text, const std::string& what) const {
    try {
      // Count the documents first, with the event parser: yaml-cpp 0.7 never
      // gets past a ',' outside a flow collection (it reports an empty document
      // there again and again, and YAML::LoadAll collects them until memory runs
      // out; found by fuzz/fuzz_config_yaml). A document that starts where the
      // previous one did is that case.
      std::istringstream in(text);
      YAML::Parser parser(in);
      DocumentStarts starts;
      while (parser.HandleNextDocument(starts)) {
        const auto& m = starts.marks;
        if (m.size() >= 2 && m.back().pos == m[m.size() - 2].pos) {
          const YAML::Mark& at = m.back();
          const std::size_t pos = static_cast<std::size_t>(std::max(at.pos, 0));
          const std::string c = pos < text.size() ? std::string(1, text[pos]) : std::string("end of input");
          fail_file(what + "not valid YAML: line " + std::to_string(at.line + 1) + ", column " +
                    std::to_string(at.column + 1) + ": unexpected '" + c + "'");
        }
      }
      if (starts.marks.size() > 1)
        fail_file(what.empty() ? "holds " + std::to_string(starts.marks.size()) + " YAML documents, expected one"
                               : what + "several YAML documents");
      return starts.marks.empty() ? YAML::Node() : YAML::Load(text);
    } catch (const YAML::ParserException& e) {  // DeepRecursion is one too
      fail_file(what + "not valid YAML: line " + std::to_string(e.mark.line + 1) + ", column " +
                std::to_string(e.mark.column + 1) + ": " + e.msg);
    } catch (const YAML::Exception& e) {
      fail_file(what + "not valid YAML: " + e.msg);
    }
  }

  Node read_file() const {
    std::error_code ec;
    auto st = fs::status(file_, ec);
    if (!fs::exists(st)) fail_file("no such file");
    if (fs::is_directory(st)) fail_file("is a folder, expected a YAML file");
    if (!fs::is_regular_file(st)) fail_file("is not a regular file (a pipe or a device); give a file");
    std::ifstream f(file_, std::ios::binary);
    if (!f) fail_file("cannot open");
    std::string text(kMaxConfigBytes + 1, '\0');
    f.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(f.gcount()));
    if (text.size() > kMaxConfigBytes)
      fail_file("larger than " + std::to_string(kMaxConfigBytes >> 20) + " MiB; not a config file");
    YAML::Node y = parse(text, "");
    Budget budget;
    count(y, 0, budget, 0, "the file");
    Node root = convert(y, "");
    if (root.kind == Node::Kind::Null) fail_file("is empty");
    if (root.kind != Node::Kind::Map) fail_file("expected a map of keys at the top level");
    return root;
  }

  // ---- --set KEY=VALUE --------------------------------------------------------

  void apply_override(Node& root, const std::string& spec) const {
    auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0) fail_file("--set '" + spec + "': expected KEY=VALUE");
    std::string key = spec.substr(0, eq), value = spec.substr(eq + 1);
    if (value.size() > kMaxOverrideBytes) fail_file("--set " + key + ": value too long");
    YAML::Node y = parse(value, "--set " + key + ": value is ");
    Budget budget;
    count(y, 0, budget, key.size(), "--set " + key);
    Node v = convert(y, key);
    mark_from_set(v);

    std::vector<std::string> parts;
    std::stringstream ss(key);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    if (key.back() == '.' || std::any_of(parts.begin(), parts.end(), [](auto& p) { return p.empty(); }))
      fail_file("--set '" + spec + "': a key is names joined by dots, e.g. steps.viz");

    Node* cur = &root;
    std::string walked;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const std::string& p = parts[i];
      const bool last = i + 1 == parts.size();
      const std::string parent = walked;
      walked = join(walked, p);
      if (cur->kind == Node::Kind::Null) {  // "intervention:" left empty in the file
        cur->kind = Node::Kind::Map;
        cur->from_set = true;
      }
      Node* child = nullptr;
      if (cur->kind == Node::Kind::Map) {
        child = cur->find(p);
        if (!child) {
          cur->map.push_back({p, Node{}});
          child = &cur->map.back().value;
          child->from_set = true;
        }
      } else if (cur->kind == Node::Kind::Seq) {
        std::size_t idx = 0;
        auto r = std::from_chars(p.data(), p.data() + p.size(), idx);
        if (r.ec != std::errc() || r.ptr != p.data() + p.size())
          fail_key(walked, "'" + parent + "' is a list; expected an index into it", true);
        if (idx >= cur->seq.size())
          fail_key(walked,
                   "no such entry; '" + parent + "' has " + std::to_string(cur->seq.size()) + " entries",
                   true);
        child = &cur->seq[idx];
      } else {
        fail_key(walked, "unknown key ('" + parent + "' is not a map)", true);
      }
      if (last) *child = v;
      cur = child;
    }
  }

  // ---- typed values -------------------------------------------------------------

  std::string as_string(const Node& n, const char* what = "a string") const {
    if (n.kind != Node::Kind::Scalar) fail(n, std::string("expected ") + what);
    return n.scalar;
  }

  std::string as_choice(const Node& n, const std::vector<std::string>& choices) const {
    if (n.kind != Node::Kind::Scalar) fail(n, "expected " + one_of(choices));
    if (!contains(choices, n.scalar)) fail(n, "expected " + one_of(choices) + ", got '" + n.scalar + "'");
    return n.scalar;
  }

  bool as_bool(const Node& n) const {
    if (n.kind == Node::Kind::Scalar && n.plain) {
      // YAML 1.2's core schema only: "yes", "on" and friends are refused, not guessed.
      const auto& s = n.scalar;
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    fail(n, "expected true or false");
  }

  static bool parse_int(const Node& n, std::int64_t& out) {
    if (n.kind != Node::Kind::Scalar || !n.plain || n.scalar.empty()) return false;
    std::string_view s = n.scalar;
    if (s[0] == '+') s.remove_prefix(1);
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  }

  // min 0 (a count) or 1 (a size).
  std::int64_t as_int(const Node& n, std::int64_t min) const {
    std::int64_t v = 0;
    if (!parse_int(n, v)) fail(n, "expected an integer");
    if (v < min)
      fail(n, std::string(min == 0 ? "expected a non-negative integer" : "expected a positive integer") +
                  ", got " + std::to_string(v));
    return v;
  }

  std::uint64_t as_uint64(const Node& n) const {
    std::uint64_t v = 0;
    bool ok = false;
    if (n.kind == Node::Kind::Scalar && n.plain && !n.scalar.empty()) {
      std::string_view s = n.scalar;
      if (s[0] == '+') s.remove_prefix(1);
      auto r = std::from_chars(s.data(), s.data() + s.size(), v);
      ok = r.ec == std::errc() && r.ptr == s.data() + s.size();
    }
    if (!ok) fail(n, "expected a non-negative integer");
    return v;
  }

  double as_double(const Node& n) const {
    double v = 0;
    bool ok = false;
    if (n.kind == Node::Kind::Scalar && n.plain && !n.scalar.empty()) {
      std::string_view s = n.scalar;
      if (s[0] == '+') s.remove_prefix(1);
      auto r = std::from_chars(s.data(), s.data() + s.size(), v);
      ok = r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(v);
    }
    if (!ok) fail(n, "expected a number");
    return v;
  }

  std::vector<int> as_layers(const Node& n) const {
    const std::string expected = "expected a list of layer indices (integers >= 0)";
    if (n.kind != Node::Kind::Seq) fail(n, expected);
    std::vector<int> out;
    for (const auto& c : n.seq) {
      std::int64_t v = 0;
      if (!parse_int(c, v) || v < 0 || v > std::numeric_limits<int>::max())
        fail(n, expected + ", got '" +
                    (c.kind == Node::Kind::Scalar ? c.scalar : std::string("a list or map")) + "'");
      if (std::find(out.begin(), out.end(), static_cast<int>(v)) != out.end())
        fail(n, "layer " + std::to_string(v) + " is listed twice");
      out.push_back(static_cast<int>(v));
    }
    return out;
  }

  // A file the run will read: checked now so a typo fails before a model loads.
  std::string as_existing_file(const Node& n) const {
    std::string p = as_string(n, "a file path");
    if (p.empty()) fail(n, "expected a file path");
    std::error_code ec;
    auto st = fs::status(p, ec);
    if (!fs::exists(st)) fail(n, "no such file '" + p + "'");
    if (fs::is_directory(st)) fail(n, "'" + p + "' is a folder, expected a file");
    // A FIFO would block the run, /dev/zero never end; a pipe read twice hashes nothing.
    if (!fs::is_regular_file(st)) fail(n, "'" + p + "' is not a regular file (a pipe or a device); give a file");
    if (!std::ifstream(p, std::ios::binary)) fail(n, "cannot read '" + p + "'");
    return p;
  }

  void check_keys(const Node& m, const std::vector<std::string>& allowed, bool sweep_run = false,
                  bool sweep_top = false) const {
    for (const auto& e : m.map) {
      if (contains(allowed, e.key)) continue;
      if (sweep_run && contains(kConfigKeys, e.key))
        fail(e.value, "set once, at the top level of a sweep config, not per run");
      if (sweep_top && contains(kRunKeys, e.key))
        fail(e.value,
             "unknown key in a sweep config; run keys go under defaults: or into each entry of runs:");
      std::string hint;
      std::size_t best = 3;
      for (const auto& a : allowed)
        if (auto d = edit_distance(e.key, a); d < best) best = d, hint = a;
      fail(e.value, "unknown key" + (hint.empty() ? std::string() : " (did you mean '" + hint + "'?)"));
    }
  }

  const Node& expect_map(const Node& n, const char* what) const {
    if (n.kind != Node::Kind::Map) fail(n, std::string("expected a map of ") + what);
    return n;
  }

  // ---- runs -----------------------------------------------------------------------

  // `m` is the run's map (defaults merged under it for a sweep); `where` its path.
  RunConfig parse_run(const Node& m, const std::string& where, bool sweep) const {
    RunConfig rc;
    if (sweep) {
      check_keys(m, kRunKeys, true);
    } else {
      std::vector<std::string> allowed = kRunKeys;
      allowed.insert(allowed.end(), kConfigKeys.begin(), kConfigKeys.end());
      check_keys(m, allowed);
    }
    auto required = [&](const char* key) -> const Node& {
      const Node* n = m.find(key);
      if (!n) fail_key(join(where, key), "required key is missing");
      return *n;
    };
    rc.model = as_string(required("model"), "a model path or Hugging Face id");
    if (rc.model.empty()) fail(*m.find("model"), "expected a model path or Hugging Face id");
    const Node& eval = required("eval_jsonl");
    rc.eval_jsonl = as_existing_file(eval);

    if (auto* n = m.find("name")) {
      rc.name = as_string(*n);
      bool ok = !rc.name.empty() && rc.name != "." && rc.name != ".." &&
                std::all_of(rc.name.begin(), rc.name.end(), [](unsigned char c) {
                  return std::isalnum(c) || c == '_' || c == '.' || c == '-';
                });
      if (!ok) fail(*n, "expected a name of letters, digits, '_', '.' and '-', got '" + rc.name + "'");
      // It names folders (OUT/.partial/NAME.calibration): within a file name's 255 bytes.
      if (rc.name.size() > kMaxRunName)
        fail(*n, "a name of at most " + std::to_string(kMaxRunName) + " characters expected, got " +
                     std::to_string(rc.name.size()));
    } else {
      rc.name = name_from_model(rc.model);
      if (rc.name.empty() || rc.name == "." || rc.name == "..")
        fail_key(join(where, "name"), "cannot derive a name from model '" + rc.model + "'; set name");
      if (rc.name.size() > kMaxRunName) rc.name.resize(kMaxRunName);
    }
    if (auto* n = m.find("eval_field")) {
      rc.eval_field = as_string(*n);
      if (rc.eval_field.empty()) fail(*n, "expected a field name");
    }
    if (auto* n = m.find("max_docs")) rc.max_docs = as_int(*n, 0);
    if (auto* n = m.find("max_total_tokens")) rc.max_total_tokens = as_int(*n, 1);
    if (auto* n = m.find("long_documents")) rc.long_documents = as_choice(*n, {"truncate", "error"});
    if (auto* n = m.find("dtype")) rc.dtype = as_choice(*n, {"float32", "bfloat16", "float16"});
    if (auto* n = m.find("device_map")) {
      rc.device_map = as_string(*n, "cpu, cuda:N or auto");
      const auto& d = rc.device_map;
      bool cuda = d.size() > 5 && d.size() <= 9 && d.compare(0, 5, "cuda:") == 0 &&
                  std::all_of(d.begin() + 5, d.end(), [](unsigned char c) { return std::isdigit(c); });
      if (d != "cpu" && d != "auto" && !cuda) fail(*n, "expected cpu, cuda:N or auto, got '" + d + "'");
    }
    if (auto* n = m.find("stages")) {
      // Pipeline stages per group: an integer >= 1, or auto (the fewest that fit, decided once the
      // model's size and the device are known). Checked against the model's layers and the group's
      // ranks where those are known (check_stages, src/model/stages.cpp).
      std::int64_t v = 0;
      if (n->kind == Node::Kind::Scalar && n->scalar == "auto")
        rc.stages = RunConfig::kAutoStages;
      else if (parse_int(*n, v) && v >= 1 && v <= (1 << 20))
        rc.stages = static_cast<int>(v);
      else
        fail(*n, "expected an integer >= 1 or auto, got '" +
                     (n->kind == Node::Kind::Scalar ? n->scalar : std::string("a list or map")) + "'");
    }
    if (auto* n = m.find("layers_to_show")) rc.layers_to_show = as_layers(*n);
    if (auto* n = m.find("max_tokens_to_show")) rc.max_tokens_to_show = as_int(*n, 1);
    if (auto* n = m.find("max_tokens_to_calc")) rc.max_tokens_to_calc = as_int(*n, 1);
    if (rc.max_tokens_to_show > rc.max_tokens_to_calc) {
      const Node* n = m.find("max_tokens_to_show");
      fail_key(n ? n->path : join(where, "max_tokens_to_show"),
               "must not exceed max_tokens_to_calc (" + std::to_string(rc.max_tokens_to_calc) + "), got " +
                   std::to_string(rc.max_tokens_to_show),
               n && n->from_set);
    }
    if (auto* n = m.find("steps")) {
      const Node& s = expect_map(*n, "steps (basic, norms, values, viz)");
      check_keys(s, kStepKeys);
      if (auto* b = s.find("basic")) rc.step_basic = as_bool(*b);
      if (auto* b = s.find("norms")) rc.step_norms = as_bool(*b);
      if (auto* b = s.find("values")) rc.step_values = as_bool(*b);
      if (auto* b = s.find("viz")) rc.step_viz = as_bool(*b);
    }
    if (auto* n = m.find("sink_policy")) rc.sink_policy = as_choice(*n, {"auto", "bos", "prepend", "first"});
    if (auto* n = m.find("epsilon")) {
      rc.epsilon = as_double(*n);
      if (!(rc.epsilon > 0 && rc.epsilon < 1))
        fail(*n, "expected a number between 0 and 1 (both excluded), got " + n->scalar);
    }
    if (auto* n = m.find("geometry_sketch")) rc.geometry_sketch = as_int(*n, 1);
    if (auto* n = m.find("top_keys")) rc.top_keys = as_int(*n, 0);
    if (auto* n = m.find("docs_to_show")) {  // a count (the first n documents) or a list of document ids
      if (n->kind == Node::Kind::Seq) {
        rc.docs_to_show_ids.clear();
        for (const auto& e : n->seq) rc.docs_to_show_ids.push_back(as_string(e, "a document id"));
        rc.docs_to_show = -1;
      } else {
        rc.docs_to_show = as_int(*n, 0);
      }
    }
    if (auto* n = m.find("intervention")) rc.intervention = parse_intervention(*n, rc.eval_jsonl);
    return rc;
  }

  InterventionConfig parse_intervention(const Node& n, const std::string& eval_jsonl) const {
    InterventionConfig ic;
    const Node& m = expect_map(n, "intervention keys");
    check_keys(m, kInterventionKeys);
    const Node* modes = m.find("modes");
    if (!modes) fail_key(join(m.path, "modes"), "required key is missing", m.from_set);
    const std::string expected = "expected a list of modes (" + one_of(kModes) + ")";
    if (modes->kind != Node::Kind::Seq) fail(*modes, expected);
    if (modes->seq.empty()) fail(*modes, "expected at least one mode (" + one_of(kModes) + ")");
    for (const auto& c : modes->seq) {
      if (c.kind != Node::Kind::Scalar) fail(*modes, expected);
      if (!contains(kModes, c.scalar)) fail(*modes, expected + ", got '" + c.scalar + "'");
      if (contains(ic.modes, c.scalar)) fail(*modes, "mode '" + c.scalar + "' is listed twice");
      ic.modes.push_back(c.scalar);
    }
    if (auto* x = m.find("granularity")) ic.granularity = as_choice(*x, {"layer", "head"});
    if (auto* x = m.find("layers")) ic.layers = as_layers(*x);
    const Node* cal = m.find("calibration_jsonl");
    const Node* mu = m.find("mu_from");
    // An empty string is "not given", as the defaults in config.hpp are.
    if (cal && cal->kind == Node::Kind::Scalar && cal->scalar.empty()) cal = nullptr;
    if (mu && mu->kind == Node::Kind::Scalar && mu->scalar.empty()) mu = nullptr;
    if (cal) ic.calibration_jsonl = as_existing_file(*cal);
    if (mu) ic.mu_from = as_existing_file(*mu);
    if (cal && mu) fail(*mu, "give calibration_jsonl (to fit mu) or mu_from (to load it), not both");
    if (cal) {
      std::error_code ec;
      if (fs::equivalent(ic.calibration_jsonl, eval_jsonl, ec))
        fail(*cal, "is the evaluation set itself; calibration documents must not be evaluated");
    }
    if (auto* x = m.find("calibration_docs")) ic.calibration_docs = as_int(*x, 0);
    if (auto* x = m.find("seed")) ic.seed = as_uint64(*x);
    if (auto* x = m.find("window_eval")) {
      ic.window_eval = parse_window_eval(*x);
      if (!ic.window_eval->ssp.empty() && !cal)
        fail(*x, "its ssp variants fit mu under each window: give calibration_jsonl (mu_from holds no windowed mu)");
    }
    if (!cal && !mu) {
      for (const auto& mode : ic.modes)
        if (mode != "zero")
          fail_key(join(m.path, "calibration_jsonl"),
                   "mode '" + mode + "' needs mu: give calibration_jsonl (to fit it) or mu_from (to load it)",
                   m.from_set);
    }
    return ic;
  }

  // A list of integers >= min, none twice.
  std::vector<std::int64_t> as_int_list(const Node& n, std::int64_t min, const std::string& what) const {
    const std::string expected = "expected a list of " + what;
    if (n.kind != Node::Kind::Seq) fail(n, expected);
    std::vector<std::int64_t> out;
    for (const auto& c : n.seq) {
      std::int64_t v = 0;
      if (!parse_int(c, v) || v < min)
        fail(n, expected + ", got '" + (c.kind == Node::Kind::Scalar ? c.scalar : std::string("a list or map")) + "'");
      if (std::find(out.begin(), out.end(), v) != out.end()) fail(n, std::to_string(v) + " is listed twice");
      out.push_back(v);
    }
    return out;
  }

  WindowEvalConfig parse_window_eval(const Node& n) const {
    WindowEvalConfig w;
    const Node& m = expect_map(n, "window_eval keys (windows, keep, ssp)");
    check_keys(m, kWindowEvalKeys);
    const Node* win = m.find("windows");
    if (!win) fail_key(join(m.path, "windows"), "required key is missing", m.from_set);
    w.windows = as_int_list(*win, 1, "windows (integers > 0)");
    if (w.windows.empty()) fail(*win, "expected at least one window");
    if (auto* x = m.find("keep")) w.keep = as_int_list(*x, 0, "kept first tokens (integers >= 0)");
    if (auto* x = m.find("ssp")) {
      const std::string expected = "expected a list of SSP variants (" + one_of(kWindowSsp) + ")";
      if (x->kind != Node::Kind::Seq) fail(*x, expected);
      w.ssp.clear();
      for (const auto& c : x->seq) {
        if (c.kind != Node::Kind::Scalar || !contains(kWindowSsp, c.scalar))
          fail(*x,
               expected + ", got '" + (c.kind == Node::Kind::Scalar ? c.scalar : std::string("a list or map")) + "'");
        if (contains(w.ssp, c.scalar)) fail(*x, "'" + c.scalar + "' is listed twice");
        w.ssp.push_back(c.scalar);
      }
    }
    if (w.keep.empty() && w.ssp.empty()) fail(m, "expected at least one variant (keep or ssp)");
    return w;
  }

  static std::string name_from_model(std::string model) {
    // random:SHAPE/config.json (random weights, src/model/random.cpp) → SHAPE_random
    const bool random = model.rfind("random:", 0) == 0;
    if (random) model = model.substr(7);
    if (random && model.size() >= 11 && model.compare(model.size() - 11, 11, "config.json") == 0)
      model.resize(model.size() - 11);
    while (model.size() > 1 && (model.back() == '/' || model.back() == '\\')) model.pop_back();
    auto slash = model.find_last_of("/\\");
    std::string base = slash == std::string::npos ? model : model.substr(slash + 1);
    for (auto& c : base) {
      unsigned char u = static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(c)));
      c = (std::isalnum(u) && u < 0x80) || u == '_' || u == '.' || u == '-' ? static_cast<char>(u) : '_';
    }
    return random && !base.empty() ? base + "_random" : base;
  }

  // Maps merge key by key (so a run can change one step of the defaults);
  // lists and scalars replace.
  static Node merge(const Node& defaults, const Node& run) {
    Node out = defaults;
    out.path = run.path;
    out.from_set = run.from_set;
    for (const auto& e : run.map) {
      Node* d = out.find(e.key);
      if (d && d->kind == Node::Kind::Map && e.value.kind == Node::Kind::Map)
        *d = merge(*d, e.value);
      else if (d)
        *d = e.value;
      else
        out.map.push_back(e);
    }
    return out;
  }

  // ---- the whole file -----------------------------------------------------------

  Config build(const Node& root) const {
    Config cfg;
    cfg.path = file_;
    const bool sweep = root.find("runs") != nullptr;
    if (sweep) check_keys(root, kSweepKeys, false, true);
    const Node* out = root.find("out");
    if (!out) fail_key("out", "required key is missing");
    cfg.out = as_string(*out, "an output folder");
    if (cfg.out.empty()) fail(*out, "expected an output folder");
    if (std::error_code ec; fs::exists(cfg.out, ec) && !fs::is_directory(cfg.out, ec))
      fail(*out, "'" + cfg.out + "' exists and is not a folder");
    if (auto* n = root.find("log_level")) cfg.log_level = as_choice(*n, kLogLevels);

    if (!sweep) {
      cfg.runs.push_back(parse_run(root, "", false));
      return cfg;
    }
    Node defaults;
    defaults.kind = Node::Kind::Map;
    if (auto* d = root.find("defaults")) {
      defaults = expect_map(*d, "run keys");
      check_keys(defaults, kRunKeys, true);
    }
    const Node& runs = *root.find("runs");
    if (runs.kind != Node::Kind::Seq || runs.seq.empty()) fail(runs, "expected a non-empty list of runs");
    std::map<std::string, std::size_t> names;
    for (std::size_t i = 0; i < runs.seq.size(); ++i) {
      const Node& r = expect_map(runs.seq[i], "run keys");
      RunConfig rc = parse_run(merge(defaults, r), r.path, true);
      if (auto [it, fresh] = names.emplace(rc.name, i); !fresh) {
        const Node* n = r.find("name");
        fail_key(join(r.path, "name"),
                 "name '" + rc.name + "'" + (n ? "" : " (derived from the model)") + " is used by runs." +
                     std::to_string(it->second) + " too; give each run a distinct name",
                 n && n->from_set);
      }
      cfg.runs.push_back(std::move(rc));
    }
    return cfg;
  }

 private:
  std::string file_;
};

void emit(YAML::Emitter& e, const Node& n) {
  switch (n.kind) {
    case Node::Kind::Null:
      e << YAML::Null;
      break;
    case Node::Kind::Scalar:
      // Quoted in the file stays quoted, so "42" stays a string on reload.
      if (!n.plain) e << YAML::DoubleQuoted;
      e << n.scalar;
      break;
    case Node::Kind::Seq: {
      bool flat = std::all_of(n.seq.begin(), n.seq.end(), [](const Node& c) {
        return c.kind == Node::Kind::Scalar || c.kind == Node::Kind::Null;
      });
      if (flat) e << YAML::Flow;
      e << YAML::BeginSeq;
      for (const auto& c : n.seq) emit(e, c);
      e << YAML::EndSeq;
      break;
    }
    case Node::Kind::Map:
      e << YAML::BeginMap;
      for (const auto& x : n.map) {
        e << YAML::Key << x.key << YAML::Value;
        emit(e, x.value);
      }
      e << YAML::EndMap;
      break;
  }
}

}  // namespace

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Loader loader(path);
  Node root = loader.read_file();
  for (const auto& o : overrides) loader.apply_override(root, o);
  assign_paths(root, "");
  Config cfg = loader.build(root);
  YAML::Emitter e;
  emit(e, root);
  cfg.text = std::string(e.c_str()) + "\n";
  // What --resume compares: the text without `stages` (where the layers run, not what is
  // computed: a run resumes with any stage count), at the top, in defaults and in each run.
  auto drop_stages = [](Node& n) {
    if (n.kind == Node::Kind::Map)
      n.map.erase(std::remove_if(n.map.begin(), n.map.end(), [](const Entry& x) { return x.key == "stages"; }),
                  n.map.end());
  };
  drop_stages(root);
  if (Node* d = root.find("defaults")) drop_stages(*d);
  if (Node* runs = root.find("runs"); runs && runs->kind == Node::Kind::Seq)
    for (auto& r : runs->seq) drop_stages(r);
  YAML::Emitter id;
  emit(id, root);
  cfg.resume_text = std::string(id.c_str()) + "\n";
  return cfg;
}

}  // namespace sink
