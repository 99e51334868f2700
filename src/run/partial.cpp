#include "sink/run/partial.hpp"

#include <ATen/ATen.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "sink/io/safetensors.hpp"
#include "sink/util/atomic_file.hpp"
#include "sink/util/error.hpp"
#include "sink/util/mapped_file.hpp"

namespace sink {
namespace fs = std::filesystem;

namespace {

constexpr char kBucketMagic[8] = {'S', 'I', 'N', 'K', 'B', 'K', 'T', '1'};

void atomic_write(const fs::path& path, const std::string& bytes) { write_file_atomic(path.string(), bytes); }

DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::F32;
    case at::kDouble: return DType::F64;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    default: throw std::logic_error("partial store: unsupported dtype");
  }
}

// What every document of a run holds, as JSON: {name: [dtype, [shape...]]}. Every
// document's arrays have the same names, dtypes and shapes (results.h5 stacks them).
nlohmann::json schema_of(const std::vector<TensorToWrite>& ts) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& t : ts) j[t.name] = {std::string(dtype_name(t.dtype)), t.shape};
  return j;
}

}  // namespace

PartialStore::PartialStore(const std::string& out, const std::string& run, const std::string& phase)
    : dir_((fs::path(out) / ".partial" / (phase.empty() ? run : run + "." + phase)).string()) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw_file_error(dir_, "creating the folder", ec.value());  // a name too long is the input's
}

void PartialStore::write_doc(std::int64_t index, const DocArrays& a) const {
  std::vector<at::Tensor> keep;
  std::vector<TensorToWrite> ts;
  for (const auto& [name, t] : a) {
    keep.push_back(t.to(at::kCPU).contiguous());
    ts.push_back({name, to_dtype(keep.back().scalar_type()), keep.back().sizes().vec(), keep.back().data_ptr()});
  }
  write_safetensors((fs::path(dir_) / ("doc_" + std::to_string(index) + ".safetensors")).string(), ts);
  // The first document written records the schema the others are checked against when read
  // back. Ranks may race here: each writes its own temporary and renames (identical contents).
  const fs::path schema = fs::path(dir_) / "schema.json";
  if (!fs::exists(schema)) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const fs::path mine = schema.string() + "." + host + "." + std::to_string(::getpid());
    atomic_write(mine, schema_of(ts).dump());
    if (::rename(mine.c_str(), schema.c_str()) != 0) throw_file_error(schema.string(), "rename failed", errno);
  }
}

std::string PartialStore::doc_mismatch(std::int64_t index) const {
  const std::string path = (fs::path(dir_) / ("doc_" + std::to_string(index) + ".safetensors")).string();
  const fs::path schema = fs::path(dir_) / "schema.json";
  if (!fs::exists(path)) return "missing";
  nlohmann::json want;
  if (fs::exists(schema)) {
    try {
      want = nlohmann::json::parse(read_text_file(schema.string()));
    } catch (const nlohmann::json::exception&) {
      throw InputError(schema.string(), "corrupt (not JSON); remove OUT/.partial and rerun");
    }
  }
  try {
    SafetensorsFile f(path);
    nlohmann::json have = nlohmann::json::object();
    for (const auto& t : f.tensors()) have[t.name] = {std::string(dtype_name(t.dtype)), t.shape};
    if (!want.is_null() && have != want) {
      for (const auto& [k, v] : want.items())
        if (!have.contains(k))
          return "no tensor '" + k + "'";
        else if (have[k] != v)
          return "tensor '" + k + "' is " + have[k].dump() + ", expected " + v.dump();
      return "tensors that a document of this run does not have";
    }
  } catch (const InputError& e) {
    return first_line(e.what());
  }
  return "";
}

std::string PartialStore::check_doc(std::int64_t index) const {
  const std::string path = (fs::path(dir_) / ("doc_" + std::to_string(index) + ".safetensors")).string();
  if (auto why = doc_mismatch(index); !why.empty())
    throw InputError(path, "partial result does not match this run's documents (" + why +
                               "); remove its bucket's checkpoint (bucket_*.ckpt), then --resume to recompute");
  return path;
}

DocArrays PartialStore::read_doc(std::int64_t index) const {
  // Never read a torn or foreign file into the results: checked against the run's schema.
  SafetensorsFile f(check_doc(index));
  DocArrays out;
  for (const auto& t : f.tensors()) {
    at::ScalarType st;
    switch (t.dtype) {
      case DType::F32: st = at::kFloat; break;
      case DType::F64: st = at::kDouble; break;
      case DType::I64: st = at::kLong; break;
      case DType::I32: st = at::kInt; break;
      default: throw InputError(f.path(), "unexpected dtype in a partial result");
    }
    out[t.name] = at::from_blob(const_cast<std::uint8_t*>(t.data), t.shape, at::TensorOptions().dtype(st)).clone();
  }
  return out;
}

void PartialStore::write_bucket(std::int64_t b, const BucketState& s) const {
  std::string bytes(kBucketMagic, 8);
  auto put = [&](std::uint64_t v) { bytes.append(reinterpret_cast<const char*>(&v), 8); };
  put(static_cast<std::uint64_t>(s.done));
  put(s.geometry.size());
  put(s.mu.size());
  bytes.append(reinterpret_cast<const char*>(s.geometry.data()), s.geometry.size() * 8);
  bytes.append(reinterpret_cast<const char*>(s.mu.data()), s.mu.size() * 8);
  atomic_write(fs::path(dir_) / ("bucket_" + std::to_string(b) + ".ckpt"), bytes);
}

std::optional<BucketState> PartialStore::read_bucket(std::int64_t b) const {
  const fs::path p = fs::path(dir_) / ("bucket_" + std::to_string(b) + ".ckpt");
  if (!fs::exists(p)) return std::nullopt;
  MappedFile f(p.string());
  auto bad = [&](const char* why) { return InputError(p.string(), std::string("corrupt checkpoint: ") + why); };
  if (f.size() < 32 || std::memcmp(f.data(), kBucketMagic, 8) != 0) throw bad("bad header");
  std::uint64_t h[3];
  std::memcpy(h, f.data() + 8, 24);
  if (h[1] > f.size() / 8 || h[2] > f.size() / 8 || 32 + 8 * (h[1] + h[2]) != f.size()) throw bad("sizes do not match");
  BucketState s;
  s.done = static_cast<std::int64_t>(h[0]);
  s.geometry.resize(h[1]);
  s.mu.resize(h[2]);
  std::memcpy(s.geometry.data(), f.data() + 32, 8 * h[1]);
  std::memcpy(s.mu.data(), f.data() + 32 + 8 * h[1], 8 * h[2]);
  return s;
}

namespace {
void check_bucket_header(const std::string& p, std::uint64_t done, std::uint64_t n_geometry, std::uint64_t n_mu,
                         std::int64_t count, std::size_t geometry_size, std::size_t mu_size) {
  auto bad = [&](const std::string& why) {
    return InputError(p, "corrupt checkpoint: " + why + "; remove it and --resume to recompute its bucket");
  };
  // A count past the bucket would read documents twice (or before the first); none is never written.
  if (done < 1 || done > static_cast<std::uint64_t>(count))
    throw bad("it counts " + std::to_string(done) + " documents done, the bucket has " + std::to_string(count));
  if (n_geometry != geometry_size)
    throw bad("geometry sums of " + std::to_string(n_geometry) + " values, this run's have " +
              std::to_string(geometry_size));
  if (n_mu != mu_size)
    throw bad("mu sums of " + std::to_string(n_mu) + " values, this run's have " + std::to_string(mu_size));
}
}  // namespace

std::optional<BucketState> PartialStore::read_bucket(std::int64_t b, std::int64_t count, std::size_t geometry_size,
                                                     std::size_t mu_size) const {
  auto s = read_bucket(b);
  if (!s) return s;
  check_bucket_header((fs::path(dir_) / ("bucket_" + std::to_string(b) + ".ckpt")).string(),
                      static_cast<std::uint64_t>(s->done), s->geometry.size(), s->mu.size(), count, geometry_size,
                      mu_size);
  return s;
}

std::int64_t PartialStore::check_bucket(std::int64_t b, std::int64_t count, std::size_t geometry_size,
                                        std::size_t mu_size) const {
  const fs::path p = fs::path(dir_) / ("bucket_" + std::to_string(b) + ".ckpt");
  if (!fs::exists(p)) return 0;
  MappedFile f(p.string());  // mapped: only the header's pages are read
  if (f.size() < 32 || std::memcmp(f.data(), kBucketMagic, 8) != 0)
    throw InputError(p.string(), "corrupt checkpoint: bad header; remove it and --resume to recompute its bucket");
  std::uint64_t h[3];
  std::memcpy(h, f.data() + 8, 24);
  if (h[1] > f.size() / 8 || h[2] > f.size() / 8 || 32 + 8 * (h[1] + h[2]) != f.size())
    throw InputError(p.string(),
                     "corrupt checkpoint: sizes do not match; remove it and --resume to recompute its bucket");
  check_bucket_header(p.string(), h[0], h[1], h[2], count, geometry_size, mu_size);
  return static_cast<std::int64_t>(h[0]);
}

std::int64_t PartialStore::count_docs() const {
  std::int64_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec))
    if (e.path().extension() == ".safetensors") ++n;
  return n;
}

void prepare_partial_dir(const std::string& out, const std::string& sha,
                         const std::map<std::string, std::int64_t>& run_docs, bool resume,
                         const std::map<std::string, std::map<std::string, std::string>>& run_inputs) {
  const fs::path dir = fs::path(out) / ".partial";
  const fs::path man = dir / "manifest.json";
  nlohmann::json want = {{"config_sha256", sha}, {"runs", run_docs}, {"inputs", run_inputs}};
  if (resume) {
    if (!fs::exists(man)) throw InputError(man.string(), "nothing to resume (no partial results here)");
    nlohmann::json have;
    try {
      have = nlohmann::json::parse(read_text_file(man.string()));
    } catch (const nlohmann::json::exception&) {
      throw InputError(man.string(), "corrupt manifest (not JSON)");
    }
    if (!have.is_object() || !have.contains("config_sha256") || !have["config_sha256"].is_string() ||
        !have.contains("runs") || !have["runs"].is_object())
      throw InputError(man.string(), "corrupt manifest (expected config_sha256 and runs)");
    const std::string have_sha = have["config_sha256"].get<std::string>();
    if (have_sha != sha)
      throw InputError(man.string(), "partial results of another config (sha256 " + have_sha +
                                         "); refusing to --resume with this one");
    if (have["runs"] != want["runs"]) throw InputError(man.string(), "partial results of another set of documents");
    // The same config over changed files (eval set, weights, tokenizer, calibration set) is another input too.
    const nlohmann::json have_inputs = have.contains("inputs") ? have["inputs"] : nlohmann::json();
    if (have_inputs != want["inputs"]) {
      std::string what = "the inputs";
      if (have_inputs.is_object())
        for (const auto& [run, hashes] : run_inputs)
          for (const auto& [k, v] : hashes)
            if (!have_inputs.contains(run) || !have_inputs[run].is_object() || have_inputs[run].value(k, nlohmann::json()) != v) {
              what = run + "'s " + k;
              break;
            }
      throw InputError(man.string(), "partial results of other input files (" + what +
                                         " changed since they were written); refusing to --resume");
    }
    return;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  atomic_write(man, want.dump(2));
}

}  // namespace sink
