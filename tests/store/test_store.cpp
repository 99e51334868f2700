// The HDF5 layer on 1 rank (serial driver) and on 2 and 4 ranks (MPI-IO), with
// h5py as the independent reader of what we write.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "sink/dist/comm.hpp"
#include "sink/store/h5.hpp"
#include "sink/util/error.hpp"

namespace sink::h5 {
namespace {

namespace fs = std::filesystem;
using dist::Comm;

// One folder for all ranks: rank 0 names and makes it, the others learn its name.
class TempDir {
 public:
  explicit TempDir(const Comm& w) : w_(w) {
    if (w.rank() == 0) {
      path_ = (fs::temp_directory_path() / ("sink_store_test_" + std::to_string(getpid()))).string();
      fs::create_directories(path_);
    }
    w.bcast(path_, 0);
  }
  ~TempDir() {
    w_.barrier();
    if (w_.rank() == 0) fs::remove_all(path_);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  const Comm& w_;
  std::string path_;
};

// Runs tests/store/h5py_check.py on rank 0; every rank gets its exit status.
int h5py_check(const Comm& w, const std::string& args) {
  std::string status = "0";
  if (w.rank() == 0) {
    const char* py = std::getenv("SINK_PYTHON");
    std::string cmd = std::string(py && *py ? py : SINK_PYTHON_DEFAULT) + " " SINK_H5PY_CHECK " " + args;
    status = std::to_string(std::system(cmd.c_str()));
  }
  w.bcast(status, 0);
  return std::stoi(status);
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Store, CollectiveRowsAtRankOffsets) {
  Comm w = Comm::world();
  TempDir dir(w);
  const std::string path = dir / "rows.h5";
  // Uneven shares; with several ranks, rank 0 has no rows but still joins each transfer.
  std::vector<std::int64_t> count(static_cast<std::size_t>(w.size()));
  for (int r = 0; r < w.size(); ++r) count[r] = w.size() == 1 ? 5 : r == 0 ? 0 : r + 1;
  const std::int64_t N = std::accumulate(count.begin(), count.end(), std::int64_t{0});
  const std::int64_t first = std::accumulate(count.begin(), count.begin() + w.rank(), std::int64_t{0});
  const std::int64_t n = count[w.rank()];
  const bool coll = w.size() > 1;
  {
    File f = File::create(path, &w);
    EXPECT_EQ(f.parallel(), w.size() > 1);
    f.attr("n_ranks", std::int64_t{w.size()});
    Group run = f.group("run");
    Dataset score = run.create("basic/sink_score", Type::F32, {N, 3, 4});
    Dataset ntok = run.create("docs/n_tokens", Type::I32, {N});
    Dataset nll = run.create("ssp/original/nll", Type::F64, {N});
    Dataset hidden = run.create("norms/hidden", Type::F32, {N + 2, 3});  // 2 rows never written
    Dataset ids = run.create_strings("docs/id", N, 12);
    Dataset empty = run.create("empty", Type::F32, {0, 3});
    EXPECT_EQ(score.dims(), (std::vector<std::int64_t>{N, 3, 4}));
    EXPECT_EQ(ids.string_width(), 12u);

    std::vector<float> s, ones(static_cast<std::size_t>(n * 3), 1.0f);
    std::vector<std::int32_t> t;
    std::vector<double> l;
    std::vector<std::string> names;
    for (std::int64_t i = first; i < first + n; ++i) {
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 4; ++k) s.push_back(static_cast<float>(i * 100 + j * 10 + k));
      t.push_back(static_cast<std::int32_t>(i * 7));
      l.push_back(static_cast<double>(i) / 3.0);
      names.push_back("döc-" + std::to_string(i));
    }
    score.write_rows(first, n, s.data());
    EXPECT_EQ(File::last_write_was_collective(), coll);
    ntok.write_rows(first, n, t.data());
    EXPECT_EQ(File::last_write_was_collective(), coll);
    nll.write_rows(first, n, l.data());
    EXPECT_EQ(File::last_write_was_collective(), coll);
    hidden.write_rows(first, n, ones.data());
    EXPECT_EQ(File::last_write_was_collective(), coll);
    ids.write_strings(first, names);
    EXPECT_EQ(File::last_write_was_collective(), coll);
    empty.write_rows(0, 0, nullptr);
  }
  w.barrier();
  {  // every rank reads the closed file back, serially
    File f = File::open_read(path);
    EXPECT_FALSE(f.parallel());
    Dataset score = f.open("run/basic/sink_score");
    EXPECT_EQ(score.type(), Type::F32);
    std::vector<float> all(static_cast<std::size_t>(N * 12));
    score.read_all(all.data());
    for (std::int64_t i = 0; i < N; ++i) EXPECT_EQ(all[i * 12 + 7], static_cast<float>(i * 100 + 13));
    std::vector<float> tail(6);
    f.open("run/norms/hidden").read_rows(N, 2, tail.data());
    for (float x : tail) EXPECT_TRUE(std::isnan(x));
    auto names = f.read_strings("run/docs/id");
    ASSERT_EQ(static_cast<std::int64_t>(names.size()), N);
    EXPECT_EQ(names.back(), "döc-" + std::to_string(N - 1));
    EXPECT_EQ(f.open("run/docs/n_tokens").type(), Type::I32);
    EXPECT_EQ(f.attr_int("n_ranks"), w.size());
  }
  w.barrier();
  EXPECT_EQ(h5py_check(w, "rows " + path + " " + std::to_string(N) + " " + std::to_string(w.size())), 0);

  {  // a resumed run: reopen read-write on the same ranks and fill the two rows left out
    File f = File::open_rw(path, &w);
    EXPECT_EQ(f.parallel(), w.size() > 1);
    Dataset hidden = f.open("run/norms/hidden");
    const bool last = w.rank() == w.size() - 1;
    std::vector<float> twos(6, 2.0f);
    hidden.write_rows(last ? N : 0, last ? 2 : 0, twos.data());
    EXPECT_EQ(File::last_write_was_collective(), coll);
    f.attr("resumed", std::int64_t{1});
  }
  w.barrier();
  File f = File::open_read(path);
  std::vector<float> tail(6);
  f.open("run/norms/hidden").read_rows(N - 1, 2, tail.data());
  EXPECT_EQ(tail, (std::vector<float>{1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(f.attr_int("resumed"), 1);
}

TEST(Store, AttributesAndStringsReadAsPythonTypes) {
  Comm w = Comm::world();
  TempDir dir(w);
  const std::string path = dir / "attrs.h5";
  std::string config = "model: x\n";
  for (int i = 0; i < 100000; ++i) config += "ü";  // 200 kB: more than an object header holds
  std::vector<double> mu(20000);
  for (std::size_t i = 0; i < mu.size(); ++i) mu[i] = 0.5 * static_cast<double>(i);
  {
    File f = File::create(path, &w);  // every rank writes the same attributes (collective)
    f.attr("tool", std::string("sink 0.1.0"));
    f.attr("config", config);
    f.attr("empty", std::string());
    f.attr("ppl", 12.5);
    f.attr("n_ranks", -(std::int64_t{1} << 40));
    f.attr("overwritten", std::string("first"));
    f.attr("overwritten", std::string("second"));
    f.attr("layers", std::vector<std::int64_t>{0, 5, 7});
    f.attr("n_layers", 36);  // plain int and size_t literals go to int64
    f.attr("n_heads", std::size_t{32});
    f.attr("mu", mu);
    Group g = f.group("qwen3_8b_base");
    g.attr("model_id", std::string("Qwen/Qwen3-8B-Base"));
    g.write_strings("docs/id", {"a", "", "ünïcode", std::string(40, 'x')});
    g.write_strings("nothing", {});
    g.open("docs/id").attr("units", std::string("tokens"));

    // Read back through the same (parallel) handle: the same calls on every rank, after a
    // flush, without which a rank may read before another rank's write has landed.
    f.flush();
    EXPECT_EQ(f.attr_string("tool"), "sink 0.1.0");
    EXPECT_EQ(f.attr_string("config"), config);
    EXPECT_EQ(f.attr_string("empty"), "");
    EXPECT_EQ(f.attr_string("overwritten"), "second");
    EXPECT_EQ(f.attr_double("ppl"), 12.5);
    EXPECT_EQ(f.attr_int("n_ranks"), -(std::int64_t{1} << 40));
    EXPECT_EQ(f.attr_double("n_ranks"), -std::ldexp(1.0, 40));  // integers widen to double
    EXPECT_EQ(f.attr_ints("layers"), (std::vector<std::int64_t>{0, 5, 7}));
    EXPECT_EQ(f.attr_int("n_layers"), 36);
    EXPECT_EQ(f.attr_int("n_heads"), 32);
    EXPECT_EQ(f.attr_doubles("mu"), mu);
    EXPECT_FALSE(f.attr_string("absent").has_value());
    EXPECT_FALSE(f.attr_double("absent").has_value());
    EXPECT_TRUE(f.has_attr("ppl"));
    EXPECT_FALSE(f.has_attr("absent"));
    EXPECT_TRUE(contains(error_of([&] { (void)f.attr_double("tool"); }), "not numeric"));
    EXPECT_TRUE(contains(error_of([&] { (void)f.attr_int("ppl"); }), "not an integer"));
    EXPECT_TRUE(contains(error_of([&] { (void)f.attr_string("ppl"); }), "not a string"));
    EXPECT_TRUE(contains(error_of([&] { (void)f.attr_double("layers"); }), "not a single value"));
    EXPECT_EQ(g.read_strings("docs/id"), (std::vector<std::string>{"a", "", "ünïcode", std::string(40, 'x')}));
    EXPECT_TRUE(g.read_strings("nothing").empty());
    EXPECT_EQ(g.attr_string("model_id"), "Qwen/Qwen3-8B-Base");
  }
  w.barrier();
  EXPECT_EQ(h5py_check(w, "attrs " + path), 0);
}

TEST(Store, ReadsWhatH5pyWrites) {
  Comm w = Comm::world();
  TempDir dir(w);
  const std::string path = dir / "from_h5py.h5";
  ASSERT_EQ(h5py_check(w, "write-vlen " + path), 0);
  File f = File::open_read(path);
  EXPECT_EQ(f.read_strings("names"), (std::vector<std::string>{"α", "beta", ""}));
  EXPECT_EQ(f.attr_string("note"), "written by h5py");
  EXPECT_EQ(f.attr_string("fixed"), "fixed-len");
  Dataset grid = f.open("grid");
  EXPECT_EQ(grid.type(), Type::F32);
  EXPECT_EQ(grid.dims(), (std::vector<std::int64_t>{2, 3}));
  std::vector<float> row(3);
  grid.read_rows(1, 1, row.data());
  EXPECT_EQ(row, (std::vector<float>{3, 4, 5}));
}

TEST(Store, ErrorsNameTheFile) {
  Comm w = Comm::world();
  TempDir dir(w);
  const std::string missing = dir / ("missing-" + std::to_string(w.rank()) + ".h5");
  std::string e = error_of([&] { File::open_read(missing); });
  EXPECT_TRUE(contains(e, missing) && contains(e, "H5Fopen")) << e;
  EXPECT_THROW(File::open_read(missing), InputError);
  EXPECT_THROW(File::open_rw(missing), std::runtime_error);

  const std::string text = dir / ("text-" + std::to_string(w.rank()) + ".h5");
  std::ofstream(text) << "not an HDF5 file\n";
  e = error_of([&] { File::open_read(text); });
  EXPECT_TRUE(contains(e, text) && contains(e, "signature")) << e;  // HDF5's innermost message

  const std::string own = dir / ("own-" + std::to_string(w.rank()) + ".h5");
  File f = File::create(own);  // serial, one per rank
  e = error_of([&] { f.open("no/such/dataset"); });
  EXPECT_TRUE(contains(e, own) && contains(e, "H5Dopen2") && contains(e, "no/such/dataset")) << e;
  Dataset d = f.create("d", Type::F64, {4, 2});
  e = error_of([&] { f.create("d", Type::F64, {4, 2}); });
  EXPECT_TRUE(contains(e, own) && contains(e, "H5Dcreate2")) << e;
  std::vector<double> buf(10);
  e = error_of([&] { d.write_rows(3, 2, buf.data()); });
  EXPECT_TRUE(contains(e, own) && contains(e, "outside")) << e;
  EXPECT_THROW(d.read_rows(-1, 1, buf.data()), std::runtime_error);
  EXPECT_THROW(f.create("s", Type::Str, {3}), std::logic_error);
  Dataset s = f.create_strings("s", 2, 3);
  e = error_of([&] { s.write_strings(0, {"abcd"}); });
  EXPECT_TRUE(contains(e, "longer than the 3 bytes")) << e;
  EXPECT_THROW(f.read_strings("d"), std::runtime_error);
}

TEST(Store, SerialFileGroupsAndHandles) {
  Comm w = Comm::world();
  TempDir dir(w);
  const std::string path = dir / ("serial-" + std::to_string(w.rank()) + ".h5");
  File f = File::create(path);
  EXPECT_FALSE(f.parallel());
  EXPECT_EQ(f.path(), path);
  Dataset d = f.create("x/y/nll", Type::F64, {3});
  double v = 2.0;
  d.write_rows(1, 1, &v);
  EXPECT_FALSE(File::last_write_was_collective());
  std::vector<double> back(3);
  d.read_all(back.data());
  EXPECT_TRUE(std::isnan(back[0]) && back[1] == 2.0 && std::isnan(back[2]));  // NaN fill
  Dataset counts = f.create("x/counts", Type::I64, {2});
  std::vector<std::int64_t> c(2, -1);
  counts.read_all(c.data());
  EXPECT_EQ(c, (std::vector<std::int64_t>{0, 0}));  // integers fill with 0

  EXPECT_TRUE(f.exists("x/y"));
  EXPECT_TRUE(f.exists("/x/y/nll"));
  EXPECT_FALSE(f.exists("x/z/w"));  // a missing parent is "no", not an error
  Group g = f.group("a/b/c");
  g.attr("k", 1.0);
  EXPECT_EQ(f.group("a/b/c").attr_double("k"), 1.0);  // the second call opens it

  File moved = std::move(f);
  EXPECT_FALSE(f.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(moved.valid());
  moved = File();  // the file stays open while a group of it lives
  g.attr("after_close", std::int64_t{3});
  g = Group();
  d = Dataset();
  counts = Dataset();
  File again = File::open_read(path);
  EXPECT_EQ(again.group("a/b/c").attr_int("after_close"), 3);

  if (w.size() == 1) {  // a one-rank communicator gives a serial file
    File one = File::create(dir / "one.h5", &w);
    EXPECT_FALSE(one.parallel());
  }
}

// Dimension scales (what xarray/netCDF read as named dimensions), the listing of every
// dataset, and [N, P] string rows; h5py checks the scales and the strings.
TEST(Store, DimensionScalesListingAndStringRows) {
  Comm w = Comm::world();
  TempDir dir(w);
  const std::string path = dir / ("scales-" + std::to_string(w.rank()) + ".h5");
  {
    File f = File::create(path);
    Group g = f.group("run");
    Dataset x = g.create("basic/score", Type::F32, {2, 3});
    std::vector<float> v{0, 1, 2, 3, 4, 5};
    x.write_all(v.data());
    g.write_strings("doc", {"a", "bb"});
    Dataset doc = g.open("doc");
    Dataset head = g.create("head", Type::I64, {3});
    std::vector<std::int64_t> h{0, 1, 2};
    head.write_all(h.data());
    doc.make_scale("doc");
    head.make_scale("head");
    x.attach_scale(doc, 0);
    x.attach_scale(head, 1);
    EXPECT_TRUE(doc.is_scale() && head.is_scale());
    EXPECT_FALSE(x.is_scale());
    Dataset t = g.create_strings("docs/tokens", {2, 3}, 4);
    t.write_strings(0, {"<s>", " the", "", "x", "ü", "end"});
    EXPECT_TRUE(contains(error_of([&] { t.write_strings(0, {"a", "b"}); }), "not whole rows"));
    EXPECT_EQ(g.datasets(), (std::vector<std::string>{"basic/score", "doc", "docs/tokens", "head"}));
  }
  w.barrier();
  EXPECT_EQ(h5py_check(w, "scales " + (dir / "scales-0.h5")), 0);  // rank 0's file
}

}  // namespace
}  // namespace sink::h5
