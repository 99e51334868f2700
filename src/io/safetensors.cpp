#include "sink/io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "sink/util/atomic_file.hpp"
#include "sink/util/error.hpp"

namespace sink {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
// A header larger than this is not a real checkpoint header (HF's own limit is 100 MB).
constexpr std::uint64_t kMaxHeader = 100ull << 20;
constexpr std::size_t kMaxDims = 8;
}  // namespace

std::optional<DType> parse_safetensors_dtype(const std::string& s) {
  static const std::map<std::string, DType> m = {
      {"F32", DType::F32},   {"F16", DType::F16},         {"BF16", DType::BF16},       {"F64", DType::F64},
      {"I8", DType::I8},     {"U8", DType::U8},           {"I16", DType::I16},         {"I32", DType::I32},
      {"I64", DType::I64},   {"BOOL", DType::BOOL},       {"F8_E4M3", DType::F8_E4M3}, {"F8_E5M2", DType::F8_E5M2}};
  auto it = m.find(s);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const auto size = file_.size();
  if (size < 8) throw InputError(path, "truncated safetensors file (" + std::to_string(size) + " bytes, no header)");
  std::uint64_t n = 0;
  std::memcpy(&n, file_.data(), 8);
  if (n > kMaxHeader) throw InputError(path, "safetensors header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    throw InputError(path, "truncated safetensors file: header of " + std::to_string(n) + " bytes but file has " +
                               std::to_string(size) + " bytes");
  json h;
  std::string duplicate;  // a tensor named twice: JSON keeps one silently, so look while parsing
  try {
    std::set<std::string> seen;
    h = json::parse(file_.data() + 8, file_.data() + 8 + n, [&](int depth, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second &&
          duplicate.empty())
        duplicate = parsed.get<std::string>();
      return true;
    });
  } catch (const json::exception& e) {
    throw InputError(path, std::string("safetensors header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) throw InputError(path, "duplicate tensor name '" + duplicate + "' in the safetensors header");
  if (!h.is_object()) throw InputError(path, "safetensors header is not a JSON object");
  const std::uint64_t data_start = 8 + n;
  const std::uint64_t buf_size = size - data_start;

  struct Range { std::uint64_t b, e; std::string name; };
  std::vector<Range> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) throw InputError(path, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m)
        if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
      continue;
    }
    const json& e = *it;
    auto bad = [&](const std::string& what) { return InputError(path, "tensor '" + name + "': " + what); };
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw bad("entry needs dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) throw bad("dtype is not a string");
    auto dt = parse_safetensors_dtype(e["dtype"].get<std::string>());
    if (!dt) throw bad("unknown dtype '" + e["dtype"].get<std::string>() + "'");
    const json& sh = e["shape"];
    const json& off = e["data_offsets"];
    if (!sh.is_array() || sh.size() > kMaxDims) throw bad("shape is not an array of at most 8 dimensions");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("data_offsets is not [begin, end]");
    TensorView t;
    t.name = name;
    t.dtype = *dt;
    t.file = path;
    unsigned __int128 elems = 1;
    for (const auto& d : sh) {
      if (!d.is_number_unsigned()) throw bad("shape has a negative or non-integer dimension");
      auto v = d.get<std::uint64_t>();
      elems *= v;
      if (elems > (unsigned __int128)(1ull << 62)) throw bad("shape is impossibly large");
      t.shape.push_back(static_cast<std::int64_t>(v));
    }
    const std::uint64_t b = off[0].get<std::uint64_t>(), en = off[1].get<std::uint64_t>();
    if (b > en) throw bad("data_offsets begin > end");
    if (en > buf_size)
      throw bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(en) + "] past the end of the data (" +
                std::to_string(buf_size) + " bytes; file truncated?)");
    const unsigned __int128 want = elems * dtype_size(*dt);
    if (want > std::numeric_limits<std::uint64_t>::max()) throw bad("shape is impossibly large");
    if (want != en - b)
      throw bad("shape and dtype need " + std::to_string((std::uint64_t)want) + " bytes but data_offsets give " +
                std::to_string(en - b));
    t.data = file_.data() + data_start + b;
    t.nbytes = en - b;
    ranges.push_back({b, en, name});
    tensors_.push_back(std::move(t));
  }
  // Tensors must not overlap (the format also forbids holes; we only insist on no overlap).
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& c) { return a.b < c.b; });
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].b < ranges[i - 1].e && ranges[i].e > ranges[i].b)
      throw InputError(path, "tensors '" + ranges[i - 1].name + "' and '" + ranges[i].name + "' overlap");
  for (std::size_t i = 0; i < tensors_.size(); ++i) by_name_[tensors_[i].name] = i;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

SafetensorsSet::SafetensorsSet(const std::string& dir) {
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    where_ = index.string();
    json j;
    std::string top, duplicate;  // a tensor listed twice in weight_map (JSON keeps one silently)
    try {
      std::set<std::string> seen;
      j = json::parse(read_text_file(where_), [&](int depth, json::parse_event_t ev, json& parsed) {
        if (ev != json::parse_event_t::key) return true;
        if (depth == 1) top = parsed.get<std::string>();
        else if (depth == 2 && top == "weight_map" && !seen.insert(parsed.get<std::string>()).second &&
                 duplicate.empty())
          duplicate = parsed.get<std::string>();
        return true;
      });
    } catch (const json::exception& e) {
      throw InputError(where_, std::string("not valid JSON: ") + e.what());
    }
    if (!duplicate.empty()) throw InputError(where_, "weight_map lists tensor '" + duplicate + "' twice");
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(where_, "no weight_map object");
    std::map<std::string, std::vector<std::string>> by_shard;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it->is_string()) throw InputError(where_, "weight_map entry '" + it.key() + "' is not a file name");
      const auto shard = it->get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        throw InputError(where_, "shard name '" + shard + "' leaves the snapshot folder");
      by_shard[shard].push_back(it.key());
    }
    for (const auto& [shard, names] : by_shard) {
      files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / shard).string()));
      const auto& f = *files_.back();
      for (const auto& n : names) {
        const TensorView* t = f.find(n);
        if (!t) throw InputError(f.path(), "tensor '" + n + "' listed in the index is missing from this shard");
        index_[n] = t;
      }
    }
  } else if (fs::exists(single)) {
    where_ = single.string();
    files_.push_back(std::make_unique<SafetensorsFile>(where_));
    for (const auto& t : files_.back()->tensors()) index_[t.name] = &t;
  } else {
    throw InputError(dir, "no model.safetensors or model.safetensors.index.json");
  }
}

const TensorView* SafetensorsSet::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> v;
  for (const auto& [k, _] : index_) v.push_back(k);
  return v;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::uint64_t off = 0;
  std::vector<std::uint64_t> sizes;
  for (const auto& t : tensors) {
    std::uint64_t n = dtype_size(t.dtype);
    for (auto d : t.shape) n *= static_cast<std::uint64_t>(d);
    h[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
    sizes.push_back(n);
    off += n;
  }
  std::string hs = h.dump();
  while ((8 + hs.size()) % 8) hs.push_back(' ');  // keep the data 8-byte aligned
  const std::uint64_t n = hs.size();
  std::vector<Piece> pieces{{&n, 8}, {hs.data(), hs.size()}};
  for (std::size_t i = 0; i < tensors.size(); ++i) pieces.push_back({tensors[i].data, sizes[i]});
  write_file_atomic(path, pieces.data(), pieces.size());  // never a half-written file under the final name
}

}  // namespace sink
