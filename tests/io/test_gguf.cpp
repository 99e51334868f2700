// GGUF reader against gguf-py (the reference): metadata, tensor infos and
// dequantised values (bit for bit), plus broken files that must each be an
// InputError naming the file. Fixtures: tools/fixtures/make_gguf_fixtures.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "sink/io/gguf.hpp"
#include "sink/util/error.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using sink::GGMLType;
using sink::GGUFFile;
using sink::GGUFValue;
using sink::InputError;

namespace {

#ifndef SINK_FIXTURES_DEFAULT
#define SINK_FIXTURES_DEFAULT "fixtures"
#endif
#ifndef SINK_SHARED_DATA_DEFAULT
#define SINK_SHARED_DATA_DEFAULT ""
#endif

std::string env_or(const char* name, const char* def) {
  const char* e = std::getenv(name);
  return e && *e ? e : def;
}

fs::path fixtures() { return fs::path(env_or("SINK_FIXTURES", SINK_FIXTURES_DEFAULT)) / "gguf"; }

json load_json(const fs::path& p) {
  std::ifstream f(p);
  if (!f) throw std::runtime_error("cannot open " + p.string() + " (run the fixture_gguf test first)");
  return json::parse(f);
}

std::vector<float> read_f32(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::path(testing::TempDir()) / ("sink_gguf_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::uint32_t type_id(const std::string& name) {
  for (std::uint32_t i = 0; i <= 12; ++i)
    if (sink::gguf_type_name(i) == name) return i;
  ADD_FAILURE() << "unknown gguf type name " << name;
  return 99;
}

// One scalar against its JSON value.
void expect_scalar(const GGUFValue& v, std::uint32_t type, const json& e, const std::string& where) {
  EXPECT_EQ(v.type, type) << where;
  EXPECT_FALSE(v.is_array()) << where;
  switch (static_cast<sink::GGUFType>(type)) {
    case sink::GGUFType::UINT8:
    case sink::GGUFType::UINT16:
    case sink::GGUFType::UINT32:
    case sink::GGUFType::UINT64:
      ASSERT_TRUE(std::holds_alternative<std::uint64_t>(v.v)) << where;
      EXPECT_EQ(std::get<std::uint64_t>(v.v), e.get<std::uint64_t>()) << where;
      break;
    case sink::GGUFType::INT8:
    case sink::GGUFType::INT16:
    case sink::GGUFType::INT32:
    case sink::GGUFType::INT64:
      ASSERT_TRUE(std::holds_alternative<std::int64_t>(v.v)) << where;
      EXPECT_EQ(std::get<std::int64_t>(v.v), e.get<std::int64_t>()) << where;
      break;
    case sink::GGUFType::FLOAT32:
    case sink::GGUFType::FLOAT64:
      ASSERT_TRUE(std::holds_alternative<double>(v.v)) << where;
      EXPECT_EQ(std::get<double>(v.v), e.get<double>()) << where;  // exact: f32 widens exactly
      break;
    case sink::GGUFType::BOOL:
      ASSERT_TRUE(std::holds_alternative<bool>(v.v)) << where;
      EXPECT_EQ(std::get<bool>(v.v), e.get<bool>()) << where;
      break;
    case sink::GGUFType::STRING:
      ASSERT_TRUE(std::holds_alternative<std::string>(v.v)) << where;
      EXPECT_EQ(std::get<std::string>(v.v), e.get<std::string>()) << where;
      break;
    default:
      ADD_FAILURE() << where << ": unexpected type " << type;
  }
}

// A nested array against nested JSON lists; `leaf` is the innermost element type.
void expect_nested(const GGUFValue& v, const json& e, std::uint32_t leaf, const std::string& where) {
  if (!e.is_array()) return expect_scalar(v, leaf, e, where);
  ASSERT_TRUE(v.is_array()) << where;
  const auto& arr = std::get<GGUFValue::Array>(v.v);
  ASSERT_EQ(arr.size(), e.size()) << where;
  const bool inner_arrays = !e.empty() && e[0].is_array();
  EXPECT_EQ(v.type, inner_arrays ? 9u : leaf) << where;
  for (std::size_t i = 0; i < arr.size(); ++i)
    expect_nested(arr[i], e[i], leaf, where + "[" + std::to_string(i) + "]");
}

void expect_value(const GGUFValue& v, const json& e, const std::string& key) {
  const std::string type = e["type"];
  if (type != "ARRAY") return expect_scalar(v, type_id(type), e["value"], key);
  ASSERT_TRUE(v.is_array()) << key;
  const std::string elem = e["elem"];
  if (elem == "ARRAY") return expect_nested(v, e["value"], type_id(e["leaf"]), key);
  const auto& arr = std::get<GGUFValue::Array>(v.v);
  EXPECT_EQ(v.type, type_id(elem)) << key;
  ASSERT_EQ(arr.size(), e["value"].size()) << key;
  for (std::size_t i = 0; i < arr.size(); ++i)
    expect_scalar(arr[i], type_id(elem), e["value"][i], key + "[" + std::to_string(i) + "]");
}

std::string hex(float f) {
  std::ostringstream s;
  s << std::hex << std::bit_cast<std::uint32_t>(f);
  return s.str();
}

// Bit-for-bit, except that any NaN equals any NaN (a payload may differ by CPU).
void expect_same_floats(const std::vector<float>& got, const std::vector<float>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool same = std::bit_cast<std::uint32_t>(got[i]) == std::bit_cast<std::uint32_t>(want[i]) ||
                      (std::isnan(got[i]) && std::isnan(want[i]));
    if (!same && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " values differ; first at " << first
                     << ": got " << got[first] << " (0x" << hex(got[first]) << "), gguf-py " << want[first]
                     << " (0x" << hex(want[first]) << ")";
}

// Everything gguf-py read from a file (dumped by the fixture script) against our reader.
void check_against_reference(const std::string& json_name, const fs::path& gguf_path) {
  const json ref = load_json(fixtures() / json_name);
  GGUFFile f(gguf_path.string());
  EXPECT_EQ(f.version(), ref["version"].get<std::uint32_t>());
  EXPECT_EQ(f.alignment(), ref["alignment"].get<std::uint64_t>());
  EXPECT_EQ(f.data_offset(), ref["data_offset"].get<std::uint64_t>());

  const json& meta = ref["metadata"];
  EXPECT_EQ(f.metadata().size(), meta.size());
  for (const auto& [key, e] : meta.items()) {
    auto it = f.metadata().find(key);
    ASSERT_NE(it, f.metadata().end()) << "missing key " << key;
    expect_value(it->second, e, key);
  }

  const json& tensors = ref["tensors"];
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const json& e = tensors[i];
    const std::string name = e["name"];
    const auto& t = f.tensors()[i];
    EXPECT_EQ(t.name, name);
    ASSERT_EQ(f.find(name), &t) << name;
    EXPECT_EQ(static_cast<std::uint32_t>(t.type), e["type"].get<std::uint32_t>()) << name;
    EXPECT_EQ(sink::ggml_type_name(t.type), e["type_name"].get<std::string>()) << name;
    EXPECT_EQ(t.ne, e["ne"].get<std::vector<std::int64_t>>()) << name;
    EXPECT_EQ(t.shape, e["shape"].get<std::vector<std::int64_t>>()) << name;
    EXPECT_EQ(t.offset, e["offset"].get<std::uint64_t>()) << name;
    EXPECT_EQ(t.nbytes, e["nbytes"].get<std::uint64_t>()) << name;
    EXPECT_EQ(t.offset % f.alignment(), 0u) << name;
    if (!e.contains("ref")) continue;
    if (sink::ggml_can_dequantize(t.type)) {
      expect_same_floats(f.to_float32(t), read_f32(fixtures() / e["ref"].get<std::string>()),
                         json_name + ": " + name + " (" + sink::ggml_type_name(t.type) + ")");
    } else {
      try {
        f.to_float32(t);
        ADD_FAILURE() << name << ": to_float32 of " << sink::ggml_type_name(t.type) << " should throw";
      } catch (const InputError& err) {
        EXPECT_NE(std::string(err.what()).find(gguf_path.string()), std::string::npos) << err.what();
        EXPECT_NE(std::string(err.what()).find(name), std::string::npos) << err.what();
      }
    }
  }
}

// --- against gguf-py ----------------------------------------------------------------

TEST(gguf_ref, TypesFile) {
  check_against_reference("types.json", fixtures() / "types.gguf");
  // Every type the brief asks for is in the file and was compared.
  GGUFFile f((fixtures() / "types.gguf").string());
  std::set<std::string> dequantisable;
  for (const auto& t : f.tensors())
    if (sink::ggml_can_dequantize(t.type)) dequantisable.insert(sink::ggml_type_name(t.type));
  for (const char* want : {"F32",  "F16",  "BF16", "F64",  "I8",   "I16",  "I32",  "I64",  "Q4_0", "Q4_1",
                           "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "MXFP4"})
    EXPECT_EQ(dequantisable.count(want), 1u) << want;
}

TEST(gguf_ref, Version2File) { check_against_reference("v2.json", fixtures() / "v2.gguf"); }

TEST(gguf_ref, Alignment64File) {
  check_against_reference("align64.json", fixtures() / "align64.gguf");
  EXPECT_EQ(GGUFFile((fixtures() / "align64.gguf").string()).alignment(), 64u);
}

TEST(gguf_ref, Stories260K) {
  const std::string shared = env_or("SINK_SHARED_DATA", SINK_SHARED_DATA_DEFAULT);
  const fs::path model = fs::path(shared) / "models/stories260K/stories260K.gguf";
  if (shared.empty() || !fs::exists(model) || !fs::exists(fixtures() / "stories260K.json"))
    GTEST_SKIP() << "no " << model;
  check_against_reference("stories260K.json", model);

  GGUFFile f(model.string());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 5);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(f.get_float("llama.attention.layer_norm_rms_epsilon"), static_cast<double>(1e-5f));
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.scores").size(), 512u);
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type").size(), 512u);
  ASSERT_EQ(f.tensors().size(), 48u);
  const auto* emb = f.find("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<std::int64_t>{512, 64}));
  EXPECT_EQ(emb->ne, (std::vector<std::int64_t>{64, 512}));
  EXPECT_EQ(f.find("blk.4.ffn_down.weight")->shape, (std::vector<std::int64_t>{64, 172}));
  EXPECT_EQ(f.find("nope"), nullptr);
}

// --- typed metadata access ------------------------------------------------------------

TEST(gguf_meta, TypedGetters) {
  const std::string path = (fixtures() / "types.gguf").string();
  GGUFFile f(path);
  EXPECT_EQ(f.get_int("test.u8"), 255);
  EXPECT_EQ(f.get_int("test.i8"), -128);
  EXPECT_EQ(f.get_int("test.u32"), 4294967295LL);
  EXPECT_EQ(f.get_int("test.i64"), INT64_MIN);
  EXPECT_EQ(f.get_float("test.f32"), static_cast<double>(0.1f));
  EXPECT_EQ(f.get_float("test.f64"), -1.0 / 3.0);
  EXPECT_EQ(f.get_float("test.u8"), 255.0);  // an integer is a number too
  EXPECT_EQ(f.get_string("test.str"), "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac");
  EXPECT_EQ(f.get_int_or("test.missing", 7), 7);
  EXPECT_EQ(f.get_float_or("test.missing", 2.5), 2.5);
  EXPECT_EQ(f.get_int_or("llama.block_count", 7), 2);
  EXPECT_EQ(f.get_float_or("llama.rope.freq_base", 1.0), 10000.0);
  EXPECT_EQ(f.get_string_array("test.arr_str"), (std::vector<std::string>{"a", "", "\xc3\xbc", "<0x0A>"}));
  EXPECT_EQ(f.get_int_array("test.arr_i32"), (std::vector<std::int64_t>{1, -2, 2147483647}));
  EXPECT_EQ(f.get_int_array("test.arr_u8"), (std::vector<std::int64_t>{0, 7, 255}));
  EXPECT_EQ(f.get_float_array("test.arr_f32"),
            (std::vector<double>{0.5, -1.25, static_cast<double>(3.0e-5f)}));
  EXPECT_EQ(f.get_float_array("test.arr_f64"), (std::vector<double>{1e300, -2.5}));
  EXPECT_TRUE(f.has("test.true"));
  EXPECT_FALSE(f.has("test.missing"));

  auto expect_error = [&](auto&& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "expected an InputError containing '" << needle << "'";
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  };
  expect_error([&] { f.get_int("test.missing"); }, "'test.missing' is missing");
  expect_error([&] { f.get_int("test.str"); }, "'test.str' has type STRING");
  expect_error([&] { f.get_int("test.u64"); }, "'test.u64'");  // 2^64-1 does not fit int64
  expect_error([&] { f.get_int("test.f32"); }, "FLOAT32");
  expect_error([&] { f.get_string("test.u8"); }, "has type UINT8");
  expect_error([&] { f.get_float("test.arr_f32"); }, "ARRAY of FLOAT32");
  expect_error([&] { f.get_string_array("test.arr_i32"); }, "expected ARRAY of STRING");
  expect_error([&] { f.get_int_array("test.arr_f32"); }, "'test.arr_f32'");
  expect_error([&] { f.get_int_array("test.arr_u64"); }, "does not fit int64");
  expect_error([&] { f.get_int_or("test.str", 1); }, "'test.str'");
  expect_error([&] { f.get_float_array("test.nested_int"); }, "'test.nested_int'");
}

// --- raw views --------------------------------------------------------------------------

TEST(gguf_view, PlainAndQuantised) {
  GGUFFile f((fixtures() / "types.gguf").string());
  const auto* t = f.find("f32");
  ASSERT_NE(t, nullptr);
  auto v = f.view(*t);
  EXPECT_EQ(v.dtype, sink::DType::F32);
  EXPECT_EQ(v.shape, t->shape);
  EXPECT_EQ(v.nbytes, t->nbytes);
  EXPECT_EQ(v.file, f.path());
  std::vector<float> out(static_cast<std::size_t>(v.numel()));
  sink::to_float32(v, out.data());
  expect_same_floats(out, f.to_float32(*t), "f32 view");

  for (const char* name : {"f16_all", "bf16_all"}) {
    t = f.find(name);
    ASSERT_NE(t, nullptr);
    v = f.view(*t);
    EXPECT_EQ(v.dtype, std::string(name) == "f16_all" ? sink::DType::F16 : sink::DType::BF16);
    out.assign(static_cast<std::size_t>(v.numel()), 0.f);
    sink::to_float32(v, out.data());
    expect_same_floats(out, f.to_float32(*t), std::string(name) + " view");
  }

  t = f.find("q.Q4_0");
  ASSERT_NE(t, nullptr);
  v = f.view(*t);
  EXPECT_EQ(v.dtype, sink::DType::U8);
  EXPECT_EQ(v.shape, (std::vector<std::int64_t>{static_cast<std::int64_t>(t->nbytes)}));
  EXPECT_EQ(f.view(*f.find("i16")).dtype, sink::DType::I16);
}

// --- the type table and the free functions -------------------------------------------

TEST(gguf_dequant, TypeTable) {
  EXPECT_EQ(sink::ggml_block_size(GGMLType::Q4_K), 256);
  EXPECT_EQ(sink::ggml_block_size(GGMLType::Q8_0), 32);
  EXPECT_EQ(sink::ggml_block_size(GGMLType::BF16), 1);
  EXPECT_EQ(sink::ggml_block_size(static_cast<GGMLType>(4)), 0);  // Q4_2, long removed
  EXPECT_EQ(sink::ggml_nbytes(GGMLType::Q4_K, 512), 288u);
  EXPECT_EQ(sink::ggml_nbytes(GGMLType::Q6_K, 256), 210u);
  EXPECT_EQ(sink::ggml_nbytes(GGMLType::F16, 3), 6u);
  EXPECT_THROW(sink::ggml_nbytes(GGMLType::Q4_0, 33), std::invalid_argument);
  EXPECT_THROW(sink::ggml_nbytes(static_cast<GGMLType>(1234), 32), std::invalid_argument);
  EXPECT_EQ(sink::ggml_type_name(GGMLType::Q5_K), "Q5_K");
  EXPECT_EQ(sink::ggml_type_name(static_cast<GGMLType>(1234)), "type 1234");
  EXPECT_FALSE(sink::ggml_can_dequantize(GGMLType::IQ2_XXS));
  EXPECT_FALSE(sink::ggml_can_dequantize(static_cast<GGMLType>(1234)));
  std::vector<std::uint8_t> src(64);
  std::vector<float> dst(64);
  EXPECT_THROW(sink::dequantize(GGMLType::Q8_0, src.data(), 31, dst.data()), std::invalid_argument);
  EXPECT_THROW(sink::dequantize(GGMLType::IQ4_NL, src.data(), 32, dst.data()), std::invalid_argument);
  // Q8_0 by hand: d = 0.5 (f16 0x3800), q = -3.
  src[0] = 0x00;
  src[1] = 0x38;
  src[2] = static_cast<std::uint8_t>(-3);
  sink::dequantize(GGMLType::Q8_0, src.data(), 32, dst.data());
  EXPECT_EQ(dst[0], -1.5f);
  EXPECT_EQ(dst[1], 0.0f);
}

// --- broken files --------------------------------------------------------------------------

// Opens `path`; returns the InputError message, or "" if it opened. Any other
// exception fails the test.
std::string open_error(const std::string& path, bool dequantize_all = false) {
  try {
    GGUFFile f(path);
    if (dequantize_all)
      for (const auto& t : f.tensors())
        if (sink::ggml_can_dequantize(t.type)) f.to_float32(t);
    return "";
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << path << ": not an InputError: " << e.what();
    return "?";
  }
}

TEST(gguf_bad, EachBrokenFileIsAnInputError) {
  const fs::path dir = fixtures() / "bad";
  const json cases = load_json(dir / "cases.json");
  EXPECT_EQ(open_error((dir / cases["base"].get<std::string>()).string()), "");
  ASSERT_GE(cases["cases"].size(), 11u);
  for (const auto& c : cases["cases"]) {
    const std::string path = (dir / c["file"].get<std::string>()).string();
    const std::string expect = c["expect"];
    const std::string msg = open_error(path);
    ASSERT_FALSE(msg.empty()) << path << " opened without error";
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "message does not start with the path: " << msg;
    EXPECT_NE(msg.find(expect), std::string::npos) << "expected '" << expect << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_LT(msg.size(), path.size() + 200) << msg;
  }
}

// base.gguf's last tensor ends at the last byte, so every shorter prefix is broken.
TEST(gguf_bad, EveryTruncationIsAnInputError) {
  const std::string base = read_bytes(fixtures() / "bad" / "base.gguf");
  ASSERT_GT(base.size(), 100u);
  const fs::path p = temp_dir("trunc") / "t.gguf";
  for (std::size_t n = 0; n < base.size(); ++n) {
    write_bytes(p, base.substr(0, n));
    const std::string msg = open_error(p.string());
    EXPECT_FALSE(msg.empty()) << "prefix of " << n << " bytes opened";
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
  }
  write_bytes(p, base);
  EXPECT_EQ(open_error(p.string()), "");
  fs::remove_all(p.parent_path());
}

// Random byte corruption: every outcome is a clean open or an InputError, never
// a crash (run under the asan preset to catch silent out-of-bounds reads).
TEST(gguf_bad, RandomCorruptionNeverCrashes) {
  const fs::path dir = temp_dir("fuzz");
  std::mt19937_64 rng(42);
  for (const fs::path& src : {fixtures() / "bad" / "base.gguf", fixtures() / "v2.gguf"}) {
    const std::string good = read_bytes(src);
    ASSERT_FALSE(good.empty());
    const fs::path p = dir / src.filename();
    int opened = 0;
    for (int iter = 0; iter < 1500; ++iter) {
      std::string b = good;
      const int n_flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < n_flips; ++k) {
        const std::size_t at = rng() % b.size();
        static constexpr std::uint8_t special[] = {0x00, 0xFF, 0x7F, 0x80, 0x01, 0x40};
        b[at] = static_cast<char>(rng() % 2 ? special[rng() % 6] : rng() % 256);
      }
      if (rng() % 8 == 0) b.resize(rng() % b.size());
      write_bytes(p, b);
      if (open_error(p.string(), true).empty()) ++opened;
    }
    EXPECT_GT(opened, 0) << src;  // some flips land in tensor data and stay valid
  }
  fs::remove_all(dir);
}

// Counts that fit in the file but would make us allocate far more than its size
// (each tensor info or metadata value takes tens of bytes in memory): refused
// before any allocation. The files are sparse: large, but only a header on disk.
TEST(gguf_bad, AllocationLimits) {
  const fs::path dir = temp_dir("limits");
  auto header = [](std::uint64_t n_tensors, std::uint64_t n_kv) {
    std::string h = "GGUF";
    auto put = [&](auto v) { h.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(std::uint32_t{3});
    put(n_tensors);
    put(n_kv);
    return h;
  };
  auto sparse = [&](const std::string& name, const std::string& head, std::uint64_t size) {
    const fs::path p = dir / name;
    write_bytes(p, head);
    fs::resize_file(p, size);
    return p.string();
  };
  // 2^20 + 1 tensor infos of at least 24 bytes each fit in 26 MB.
  std::string msg = open_error(sparse("tensors.gguf", header((1u << 20) + 1, 0), 26u << 20));
  EXPECT_NE(msg.find("tensor count 1048577 exceeds the limit of 1048576"), std::string::npos) << msg;
  msg = open_error(sparse("kv.gguf", header(0, (1u << 20) + 1), 14u << 20));
  EXPECT_NE(msg.find("metadata count 1048577 exceeds the limit"), std::string::npos) << msg;
  // One metadata array of 2^24 + 1 UINT8 values: 17 MB on disk, ~1 GB as GGUFValues.
  std::string h = header(0, 1);
  auto put = [&](auto v) { h.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(std::uint64_t{4});
  h += "big!";
  put(std::uint32_t{9});  // ARRAY
  put(std::uint32_t{0});  // of UINT8
  put(std::uint64_t{(1u << 24) + 1});
  msg = open_error(sparse("array.gguf", h, h.size() + (1u << 24) + 1));
  EXPECT_NE(msg.find("metadata arrays hold more than 16777216 values"), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(gguf_bad, MissingFile) {
  const std::string msg = open_error("/nonexistent/model.gguf");
  EXPECT_NE(msg.find("/nonexistent/model.gguf"), std::string::npos) << msg;
}

}  // namespace
