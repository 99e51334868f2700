// load_tokenizer: picks the loader from what PATH is.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sink/io/gguf.hpp"
#include "sink/tok/hf_pipeline.hpp"
#include "sink/util/error.hpp"
#include "sink/util/mapped_file.hpp"

namespace sink {

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) { return read_text_file(p.string()); }  // regular files only

bool has_magic(const fs::path& p, const char* magic) {
  std::ifstream in(p, std::ios::binary);
  char buf[4] = {};
  return in.read(buf, 4) && std::memcmp(buf, magic, 4) == 0;
}

// tokenizer_config.json beside the tokenizer, if any.
struct TokConfig {
  std::string bos, eos;
  std::optional<bool> add_bos, add_eos;
};

TokConfig read_config(const fs::path& dir) {
  TokConfig c;
  fs::path p = dir / "tokenizer_config.json";
  if (!fs::exists(p)) return c;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(p));
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    throw InputError(p.string(), std::string("not valid JSON: ") + e.what());
  }
  auto name = [&](const char* key) -> std::string {
    if (!j.contains(key)) return "";
    const auto& v = j[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return "";
  };
  c.bos = name("bos_token");
  c.eos = name("eos_token");
  if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) c.add_bos = j["add_bos_token"].get<bool>();
  if (j.contains("add_eos_token") && j["add_eos_token"].is_boolean()) c.add_eos = j["add_eos_token"].get<bool>();
  return c;
}

std::unique_ptr<Tokenizer> load_json(const fs::path& p) {
  tok::Pipeline pipe = tok::parse_tokenizer_json(p.string(), read_file(p));
  TokConfig c = read_config(p.parent_path());
  return tok::make_hf_tokenizer(std::move(pipe), c.bos, c.eos);
}

std::unique_ptr<Tokenizer> load_spm(const fs::path& p) {
  tok::Pipeline pipe = tok::parse_sentencepiece_model(p.string(), read_file(p));
  TokConfig c = read_config(p.parent_path());
  // LlamaTokenizer builds its post-processor from add_bos_token / add_eos_token.
  std::string bos = c.bos.empty() ? pipe.bos_name : c.bos;
  std::string eos = c.eos.empty() ? pipe.eos_name : c.eos;
  auto id_of = [&](const std::string& t) -> std::optional<std::int32_t> {
    if (auto it = pipe.model->vocab().find(t); it != pipe.model->vocab().end()) return it->second;
    return std::nullopt;
  };
  pipe.prefix.clear();
  pipe.suffix.clear();
  if (c.add_bos.value_or(true))
    if (auto id = id_of(bos)) pipe.prefix.push_back(*id);
  if (c.add_eos.value_or(false))
    if (auto id = id_of(eos)) pipe.suffix.push_back(*id);
  return tok::make_hf_tokenizer(std::move(pipe), bos, eos);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json")) return load_json(p / "tokenizer.json");
    if (fs::exists(p / "tokenizer.model")) {
      check_regular_file((p / "tokenizer.model").string());
      return load_spm(p / "tokenizer.model");
    }
    throw InputError(path, "no tokenizer.json or tokenizer.model in this directory");
  }
  if (!fs::exists(p, ec)) throw InputError(path, "no such file or directory");
  check_regular_file(path);  // before has_magic reads it: a FIFO would block
  if (p.extension() == ".gguf" || has_magic(p, "GGUF")) {
    GGUFFile f(path);
    return load_gguf_tokenizer(f);
  }
  if (p.extension() == ".model") return load_spm(p);
  return load_json(p);
}

}  // namespace sink
