// tokenizer.json -> Pipeline. Only what the supported families use is
// accepted; anything else is an InputError that names the file and the
// component, so that we never silently tokenize differently from HF.
#include <nlohmann/json.hpp>

#include "sink/tok/hf_pipeline.hpp"
#include "sink/tok/unicode.hpp"
#include "sink/util/error.hpp"

namespace sink::tok {

namespace {

using nlohmann::json;

struct Ctx {
  const std::string& path;
  [[noreturn]] void fail(const std::string& what) const { throw InputError(path, what); }
};

std::string str_or(const json& j, const char* key, const std::string& def = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}
bool bool_or(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : def;
}

// A token id: an integer in [0, kMaxTokenId] (get<int32_t> would wrap 2^32 + 5 to 5).
std::int32_t token_id(const Ctx& c, const json& v, const std::string& what) {
  if (!v.is_number_integer()) c.fail(what + " is not an integer");
  const bool neg = v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0;
  if (neg || v.get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxTokenId))
    c.fail(what + " " + v.dump() + " is outside [0, " + std::to_string(kMaxTokenId) + "]");
  return static_cast<std::int32_t>(v.get<std::int64_t>());
}

std::shared_ptr<const Regex> make_regex(const Ctx& c, const std::string& pattern, const char* where) {
  try {
    return std::make_shared<const Regex>(pattern);
  } catch (const std::exception& e) {
    c.fail(std::string(where) + ": " + e.what());
  }
}

// {"String": s} or {"Regex": r}: sets literal or re.
void read_pattern(const Ctx& c, const json& j, std::string& literal, std::shared_ptr<const Regex>& re,
                  const char* where) {
  if (!j.is_object()) c.fail(std::string(where) + ": pattern must be an object");
  if (j.contains("String")) literal = j["String"].get<std::string>();
  else if (j.contains("Regex")) re = make_regex(c, j["Regex"].get<std::string>(), where);
  else c.fail(std::string(where) + ": pattern must have String or Regex");
}

void read_normalizer(const Ctx& c, const json& j, std::vector<NormStep>& out) {
  if (j.is_null()) return;
  std::string type = str_or(j, "type");
  if (type == "Sequence") {
    for (const auto& n : j.at("normalizers")) read_normalizer(c, n, out);
  } else if (type == "NFC") {
    out.push_back(NormStep::make(NormStep::kNFC));
  } else if (type == "NFD") {
    out.push_back(NormStep::make(NormStep::kNFD));
  } else if (type == "Prepend") {
    out.push_back(NormStep::make(NormStep::kPrepend, j.at("prepend").get<std::string>()));
  } else if (type == "Replace") {
    NormStep st = NormStep::make(NormStep::kReplace, "", j.at("content").get<std::string>());
    read_pattern(c, j.at("pattern"), st.a, st.re, "normalizer Replace");
    if (st.re) st.kind = NormStep::kReplaceRegex;
    out.push_back(std::move(st));
  } else {
    c.fail("unsupported normalizer '" + type + "'");
  }
}

SplitBehavior read_behavior(const Ctx& c, const std::string& b) {
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  c.fail("unknown split behavior '" + b + "'");
}

PreStep::Prepend read_prepend_scheme(const json& j) {
  std::string s = str_or(j, "prepend_scheme");
  if (s == "first") return PreStep::kFirst;
  if (s == "never") return PreStep::kNever;
  if (s == "always") return PreStep::kAlways;
  // Older files: add_prefix_space.
  return bool_or(j, "add_prefix_space", true) ? PreStep::kAlways : PreStep::kNever;
}

void read_pre(const Ctx& c, const json& j, std::vector<PreStep>& out) {
  if (j.is_null()) return;
  std::string type = str_or(j, "type");
  if (type == "Sequence") {
    for (const auto& n : j.at("pretokenizers")) read_pre(c, n, out);
  } else if (type == "Split") {
    PreStep st = PreStep::make(PreStep::kSplit);
    read_pattern(c, j.at("pattern"), st.literal, st.re, "pre_tokenizer Split");
    st.behavior = read_behavior(c, j.at("behavior").get<std::string>());
    st.invert = bool_or(j, "invert", false);
    out.push_back(std::move(st));
  } else if (type == "ByteLevel") {
    PreStep st = PreStep::make(PreStep::kByteLevel);
    st.add_prefix_space = bool_or(j, "add_prefix_space", true);
    st.use_regex = bool_or(j, "use_regex", true);
    out.push_back(std::move(st));
  } else if (type == "Metaspace") {
    PreStep st = PreStep::make(PreStep::kMetaspace);
    st.replacement = str_or(j, "replacement", "\xE2\x96\x81");
    if (st.replacement.empty()) c.fail("pre_tokenizer Metaspace: empty replacement");
    st.prepend = read_prepend_scheme(j);
    st.split = bool_or(j, "split", true);
    out.push_back(std::move(st));
  } else {
    c.fail("unsupported pre_tokenizer '" + type + "'");
  }
}

void read_decoder(const Ctx& c, const json& j, std::vector<DecStep>& out) {
  std::string type = str_or(j, "type");
  if (type == "Sequence") {
    for (const auto& n : j.at("decoders")) read_decoder(c, n, out);
  } else if (type == "ByteLevel") {
    out.push_back(DecStep::make(DecStep::kByteLevel));
  } else if (type == "Replace") {
    DecStep st = DecStep::make(DecStep::kReplace);
    std::shared_ptr<const Regex> re;
    read_pattern(c, j.at("pattern"), st.a, re, "decoder Replace");
    if (re) c.fail("decoder Replace with a Regex pattern is not supported");
    st.b = j.at("content").get<std::string>();
    out.push_back(std::move(st));
  } else if (type == "ByteFallback") {
    out.push_back(DecStep::make(DecStep::kByteFallback));
  } else if (type == "Fuse") {
    out.push_back(DecStep::make(DecStep::kFuse));
  } else if (type == "Strip") {
    DecStep st = DecStep::make(DecStep::kStrip);
    std::string content = str_or(j, "content", " ");
    if (content.empty()) c.fail("decoder Strip: empty content");
    std::size_t i = 0;
    st.content = next_cp(content, i);
    st.start = j.value("start", 0);
    st.stop = j.value("stop", 0);
    out.push_back(std::move(st));
  } else if (type == "Metaspace") {
    DecStep st = DecStep::make(DecStep::kMetaspace);
    st.a = str_or(j, "replacement", "\xE2\x96\x81");
    st.prepend = read_prepend_scheme(j);
    out.push_back(std::move(st));
  } else {
    c.fail("unsupported decoder '" + type + "'");
  }
}

std::int32_t special_id(const Ctx& c, const json& specials, const std::string& name) {
  auto it = specials.find(name);
  if (it == specials.end() || !it->contains("ids") || (*it)["ids"].empty())
    c.fail("post_processor names special token '" + name + "' without ids");
  if ((*it)["ids"].size() != 1) c.fail("post_processor special token '" + name + "' has several ids");
  return token_id(c, (*it)["ids"][0], "post_processor id of '" + name + "'");
}

void read_post(const Ctx& c, const json& j, Pipeline& p) {
  if (j.is_null()) return;
  std::string type = str_or(j, "type");
  if (type == "Sequence") {
    for (const auto& n : j.at("processors")) read_post(c, n, p);
  } else if (type == "ByteLevel") {
    // Offsets only.
  } else if (type == "TemplateProcessing") {
    bool seen_a = false;
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        if (seen_a) c.fail("post_processor template has two sequences");
        seen_a = true;
      } else if (item.contains("SpecialToken")) {
        std::int32_t id = special_id(c, j.at("special_tokens"), item["SpecialToken"].at("id").get<std::string>());
        (seen_a ? p.suffix : p.prefix).push_back(id);
      } else {
        c.fail("post_processor template item not understood");
      }
    }
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    p.prefix.push_back(token_id(c, j.at("cls").at(1), "post_processor cls id"));
    p.suffix.push_back(token_id(c, j.at("sep").at(1), "post_processor sep id"));
  } else {
    c.fail("unsupported post_processor '" + type + "'");
  }
}

void read_model(const Ctx& c, const json& m, Pipeline& p, bool byte_level) {
  if (!m.is_object()) c.fail("'model' is missing");
  std::string type = str_or(m, "type");
  if (type.empty() && m.contains("merges")) type = "BPE";  // very old files omit the type
  if (type != "BPE") c.fail("unsupported model type '" + type + "' (supported: BPE)");
  if (!m.contains("vocab") || !m["vocab"].is_object()) c.fail("model.vocab is missing");
  if (!m.contains("merges") || !m["merges"].is_array()) c.fail("model.merges is missing");
  if (!str_or(m, "continuing_subword_prefix").empty() || !str_or(m, "end_of_word_suffix").empty())
    c.fail("BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
    c.fail("BPE dropout is not supported");
  BpeConfig cfg;
  cfg.byte_level = byte_level;
  cfg.vocab.reserve(m["vocab"].size());
  for (const auto& [tok, id] : m["vocab"].items()) {
    cfg.vocab.emplace(tok, token_id(c, id, "model.vocab: id of '" + tok + "'"));
  }
  const auto& merges = m["merges"];
  cfg.merges.reserve(merges.size());
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const auto& e = merges[r];
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      std::size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        c.fail("model.merges[" + std::to_string(r) + "] is not two tokens: '" + s + "'");
      cfg.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      cfg.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      c.fail("model.merges[" + std::to_string(r) + "] is not a merge");
    }
  }
  cfg.byte_fallback = bool_or(m, "byte_fallback", false);
  cfg.fuse_unk = bool_or(m, "fuse_unk", false);
  cfg.ignore_merges = bool_or(m, "ignore_merges", false);
  if (m.contains("unk_token") && m["unk_token"].is_string()) cfg.unk_token = m["unk_token"].get<std::string>();
  try {
    p.model = std::make_unique<Bpe>(std::move(cfg));
  } catch (const std::invalid_argument& e) {
    c.fail(std::string("model: ") + e.what());
  }
}

}  // namespace

Pipeline parse_tokenizer_json(const std::string& path, const std::string& text) {
  Ctx c{path};
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    c.fail(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) c.fail("not a tokenizer.json (top level is not an object)");
  Pipeline p;
  p.source = path;
  try {
    if (j.contains("truncation") && !j["truncation"].is_null())
      c.fail("truncation in tokenizer.json is not supported");
    if (j.contains("normalizer")) read_normalizer(c, j["normalizer"], p.normalizer);
    if (j.contains("pre_tokenizer")) read_pre(c, j["pre_tokenizer"], p.pre);
    bool byte_level = false;
    for (std::size_t i = 0; i < p.pre.size(); ++i)
      if (p.pre[i].kind == PreStep::kByteLevel) {
        if (i + 1 != p.pre.size()) c.fail("a ByteLevel pre_tokenizer must be the last one");
        byte_level = true;
      }
    read_model(c, j.contains("model") ? j["model"] : json(), p, byte_level);
    if (j.contains("post_processor")) read_post(c, j["post_processor"], p);
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      p.has_decoder = true;
      read_decoder(c, j["decoder"], p.decoder);
    }
    if (j.contains("added_tokens")) {
      for (const auto& a : j["added_tokens"]) {
        AddedToken t;
        t.content = a.at("content").get<std::string>();
        t.id = token_id(c, a.at("id"), "added_tokens id of '" + t.content + "'");
        t.special = bool_or(a, "special", false);
        t.normalized = bool_or(a, "normalized", !t.special);
        t.lstrip = bool_or(a, "lstrip", false);
        t.rstrip = bool_or(a, "rstrip", false);
        t.single_word = bool_or(a, "single_word", false);
        p.added.push_back(std::move(t));
      }
    }
  } catch (const json::exception& e) {
    c.fail(std::string("malformed tokenizer.json: ") + e.what());
  }
  p.describe = std::string("tokenizer.json: BPE") + (p.model->byte_level() ? ", byte-level" : "") +
               (p.normalizer.empty() ? "" : ", normalizer") + ", " + std::to_string(p.added.size()) +
               " added tokens";
  return p;
}

}  // namespace sink::tok
