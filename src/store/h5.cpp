// Parallel HDF5 behind RAII handles. Every H5* call goes through H5CALL, which
// throws a std::runtime_error naming the routine, the file, the object and the
// innermost message of HDF5's error stack (automatic error printing is off).
#include "sink/store/h5.hpp"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "sink/dist/comm.hpp"
#include "sink/util/error.hpp"

namespace sink::h5 {
namespace {

static_assert(std::is_same_v<hid_t, std::int64_t>, "Object stores hid_t as int64");

using Ctx = detail::FileCtx;

bool g_last_collective = false;

// HDF5 prints its error stack on every failure unless told not to; we report it ourselves.
void quiet() {
  thread_local const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

// The innermost (most specific) message of the current error stack, which is then cleared.
std::string innermost_error() {
  std::string msg;
  auto walk = [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
    if (n == 0 && e && e->desc) *static_cast<std::string*>(data) = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? "(no HDF5 error message)" : msg;
}

const Ctx& ctx_of(const std::shared_ptr<const Ctx>& c) {
  static const Ctx none{"(unknown file)"};
  return c ? *c : none;
}

template <class R>
bool failed(R r) {
  if constexpr (std::is_unsigned_v<R>)
    return r == 0;  // H5Tget_size and friends
  else
    return static_cast<long long>(r) < 0;  // hid_t, herr_t, htri_t, int, enums with -1 for errors
}

enum class Kind { Runtime, Input };

[[noreturn]] void fail(const char* routine, const Ctx& c, const std::string& what, Kind kind) {
  std::string problem = std::string(routine) + " failed" + (what.empty() ? "" : " on '" + what + "'") + ": " +
                        innermost_error();
  if (kind == Kind::Input) throw InputError(c.path, problem);
  throw std::runtime_error(c.path + ": " + problem);
}

template <class R>
R checked(R r, const char* routine, const Ctx& c, const std::string& what, Kind kind = Kind::Runtime) {
  if (failed(r)) fail(routine, c, what, kind);
  return r;
}

// The object's path in its file ("/run/basic/sink_score"), for messages only.
std::string name_of(hid_t obj) {
  char buf[512] = {};
  return H5Iget_name(obj, buf, sizeof buf) > 0 ? buf : "";
}

// The same, for calls on an object whose name is looked up only on failure.
template <class R>
R checked(R r, const char* routine, const Ctx& c, hid_t obj) {
  if (failed(r)) fail(routine, c, name_of(obj), Kind::Runtime);
  return r;
}

// quiet() runs before the call (comma operator), so even a first call prints nothing.
#define H5CALL(ctx, what, fn, ...) (quiet(), checked(fn(__VA_ARGS__), #fn, (ctx), (what)))

herr_t close_id(hid_t id) {
  using Close = herr_t (*)(hid_t);
  static const std::pair<H5I_type_t, Close> closers[] = {
      {H5I_FILE, H5Fclose},     {H5I_GROUP, H5Gclose},     {H5I_DATASET, H5Dclose},    {H5I_ATTR, H5Aclose},
      {H5I_DATATYPE, H5Tclose}, {H5I_DATASPACE, H5Sclose}, {H5I_GENPROP_LST, H5Pclose}};
  H5I_type_t type = H5Iget_type(id);
  for (auto [t, close] : closers)
    if (t == type) return close(id);
  return H5Idec_ref(id) < 0 ? -1 : 0;
}

// {file type, memory type} of a numeric Type.
std::pair<hid_t, hid_t> numeric_types(Type t) {
  if (t == Type::F32) return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT};
  if (t == Type::F64) return {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE};
  if (t == Type::I32) return {H5T_STD_I32LE, H5T_NATIVE_INT32};
  if (t == Type::I64) return {H5T_STD_I64LE, H5T_NATIVE_INT64};
  if (t == Type::U8) return {H5T_STD_U8LE, H5T_NATIVE_UINT8};
  throw std::logic_error("sink::h5: strings have no fixed HDF5 type");
}

Type classify(hid_t type, const Ctx& c, const std::string& what) {
  H5T_class_t cls = H5CALL(c, what, H5Tget_class, type);
  std::size_t size = H5CALL(c, what, H5Tget_size, type);
  if (cls == H5T_STRING) return Type::Str;
  if (cls == H5T_FLOAT) return size <= 4 ? Type::F32 : Type::F64;
  if (cls == H5T_INTEGER) return size == 1 ? Type::U8 : size <= 4 ? Type::I32 : Type::I64;
  // A file someone else made (an intervention's mu_from) can hold anything: the file's problem.
  throw InputError(c.path, "'" + what + "' has a type sink::h5 does not read (HDF5 class " + std::to_string(int(cls)) +
                               ", " + std::to_string(size) + " bytes)");
}

// A UTF-8 string type: variable length (H5T_VARIABLE) or `width` bytes, NUL-padded.
Object string_type(std::size_t width, const Ctx& c, const std::string& what) {
  Object t(H5CALL(c, what, H5Tcopy, H5T_C_S1));
  H5CALL(c, what, H5Tset_size, t.id(), width);
  H5CALL(c, what, H5Tset_cset, t.id(), H5T_CSET_UTF8);
  // NULLPAD, not NULLTERM: a string of exactly `width` bytes keeps its last byte.
  if (width != H5T_VARIABLE) H5CALL(c, what, H5Tset_strpad, t.id(), H5T_STR_NULLPAD);
  return t;
}

Object simple_space(const std::vector<hsize_t>& dims, const Ctx& c, const std::string& what) {
  if (dims.empty()) return Object(H5CALL(c, what, H5Screate, H5S_SCALAR));
  return Object(H5CALL(c, what, H5Screate_simple, static_cast<int>(dims.size()), dims.data(), nullptr));
}

Object link_create_plist(const Ctx& c, const std::string& what) {
  Object lcpl(H5CALL(c, what, H5Pcreate, H5P_LINK_CREATE));
  H5CALL(c, what, H5Pset_create_intermediate_group, lcpl.id(), 1);
  return lcpl;
}

// Splits a fixed-length string buffer of `n` strings of `width` bytes.
std::vector<std::string> unpack(const std::vector<char>& buf, std::size_t n, std::size_t width,
                                bool spacepad) {
  std::vector<std::string> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const char* p = buf.data() + i * width;
    std::size_t len = strnlen(p, width);
    if (spacepad)
      while (len > 0 && p[len - 1] == ' ') --len;
    out[i].assign(p, len);
  }
  return out;
}

// Reads every string of an attribute or dataset (`read` fills a buffer for a memory type).
template <class Read>
std::vector<std::string> read_string_data(hid_t type, std::size_t n, const Ctx& c, const std::string& what,
                                          Read read) {
  if (H5CALL(c, what, H5Tis_variable_str, type) > 0) {
    Object mt = string_type(H5T_VARIABLE, c, what);
    std::vector<char*> ptrs(n, nullptr);
    read(mt.id(), ptrs.data());
    std::vector<std::string> out(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (ptrs[i]) out[i] = ptrs[i];
      H5free_memory(ptrs[i]);
    }
    return out;
  }
  std::size_t width = H5CALL(c, what, H5Tget_size, type);
  Object mt(H5CALL(c, what, H5Tcopy, type));
  std::vector<char> buf(n * width + 1, '\0');
  read(mt.id(), buf.data());
  return unpack(buf, n, width, H5CALL(c, what, H5Tget_strpad, type) == H5T_STR_SPACEPAD);
}

std::vector<char> pack(const std::vector<std::string>& v, std::size_t width, const Ctx& c,
                       const std::string& what) {
  std::vector<char> buf(v.size() * width, '\0');
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i].size() > width)
      throw std::runtime_error(c.path + ": string " + std::to_string(i) + " longer than the " +
                               std::to_string(width) + " bytes of '" + what + "'");
    std::memcpy(buf.data() + i * width, v[i].data(), v[i].size());
  }
  return buf;
}

}  // namespace

// ---------------------------------------------------------------- Object

Object::~Object() {
  if (id_ < 0) return;
  quiet();
  // While an exception unwinds in a parallel file, closing would be a collective call that
  // the other ranks are not making: leave the id to process exit (the caller aborts).
  if (ctx_ && ctx_->parallel && std::uncaught_exceptions() > 0) return;
  const bool is_file = H5Iget_type(id_) == H5I_FILE;
  if (close_id(id_) < 0) {
    try {
      const std::string e = innermost_error();
      if (ctx_ && ctx_->close_error.empty()) ctx_->close_error = e;
      if (!ctx_) std::fprintf(stderr, "sink::h5: closing an HDF5 object failed: %s\n", first_line(e).c_str());
    } catch (...) {  // a destructor never throws
    }
  }
  // The file is the last of its objects: say once what went wrong, unless File::close() did.
  if (is_file && ctx_ && !ctx_->close_error.empty() && !ctx_->close_error_reported && std::uncaught_exceptions() == 0) {
    ctx_->close_error_reported = true;
    std::fprintf(stderr, "sink::h5: closing %s failed: %s\n", ctx_->path.c_str(), first_line(ctx_->close_error).c_str());
  }
}

Object::Object(Object&& o) noexcept : id_(o.id_), ctx_(std::move(o.ctx_)) { o.id_ = -1; }

Object& Object::operator=(Object&& o) noexcept {
  if (this != &o) {
    Object old(id_, std::move(ctx_));  // closes ours on scope exit
    id_ = o.id_;
    ctx_ = std::move(o.ctx_);
    o.id_ = -1;
  }
  return *this;
}

const std::string& Object::file_path() const {
  static const std::string none;
  return ctx_ ? ctx_->path : none;
}

namespace {
// Replaces attribute `name` of `loc` (collective in parallel files: same data on every rank).
void put_attr(hid_t loc, const Ctx& c, const std::string& name, hid_t ftype, hid_t mtype,
              const std::vector<hsize_t>& dims, const void* data) {
  if (H5CALL(c, name, H5Aexists, loc, name.c_str()) > 0) H5CALL(c, name, H5Adelete, loc, name.c_str());
  Object space = simple_space(dims, c, name);
  Object a(H5CALL(c, name, H5Acreate2, loc, name.c_str(), ftype, space.id(), H5P_DEFAULT, H5P_DEFAULT));
  H5CALL(c, name, H5Awrite, a.id(), mtype, data);
}

// Reads numeric attribute `name` as `mtype`; nullopt if absent.
template <class T>
std::optional<std::vector<T>> get_attr(hid_t loc, const Ctx& c, const std::string& name, hid_t mtype) {
  if (H5CALL(c, name, H5Aexists, loc, name.c_str()) <= 0) return std::nullopt;
  Object a(H5CALL(c, name, H5Aopen, loc, name.c_str(), H5P_DEFAULT));
  Object t(H5CALL(c, name, H5Aget_type, a.id()));
  H5T_class_t cls = H5CALL(c, name, H5Tget_class, t.id());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT)
    throw std::runtime_error(c.path + ": attribute '" + name + "' is not numeric");
  if (std::is_integral_v<T> && cls != H5T_INTEGER)
    throw std::runtime_error(c.path + ": attribute '" + name + "' is not an integer");
  Object s(H5CALL(c, name, H5Aget_space, a.id()));
  std::vector<T> v(static_cast<std::size_t>(H5CALL(c, name, H5Sget_simple_extent_npoints, s.id())));
  if (!v.empty()) H5CALL(c, name, H5Aread, a.id(), mtype, v.data());
  return v;
}

template <class T>
std::optional<T> get_scalar_attr(hid_t loc, const Ctx& c, const std::string& name, hid_t mtype) {
  auto v = get_attr<T>(loc, c, name, mtype);
  if (!v) return std::nullopt;
  if (v->size() != 1) throw std::runtime_error(c.path + ": attribute '" + name + "' is not a single value");
  return (*v)[0];
}
}  // namespace

void Object::attr(const std::string& name, const std::string& v) const {
  // Variable-length so that h5py reads a str, and so that long texts (a config) fit.
  const Ctx& c = ctx_of(ctx_);
  Object t = string_type(H5T_VARIABLE, c, name);
  const char* p = v.c_str();
  put_attr(id_, c, name, t.id(), t.id(), {}, &p);
}

void Object::attr(const std::string& name, double v) const {
  put_attr(id_, ctx_of(ctx_), name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {}, &v);
}

void Object::attr(const std::string& name, std::int64_t v) const {
  put_attr(id_, ctx_of(ctx_), name, H5T_STD_I64LE, H5T_NATIVE_INT64, {}, &v);
}

void Object::attr(const std::string& name, const std::vector<double>& v) const {
  put_attr(id_, ctx_of(ctx_), name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {v.size()}, v.data());
}

void Object::attr(const std::string& name, const std::vector<std::int64_t>& v) const {
  put_attr(id_, ctx_of(ctx_), name, H5T_STD_I64LE, H5T_NATIVE_INT64, {v.size()}, v.data());
}

std::optional<std::string> Object::attr_string(const std::string& name) const {
  const Ctx& c = ctx_of(ctx_);
  if (H5CALL(c, name, H5Aexists, id_, name.c_str()) <= 0) return std::nullopt;
  Object a(H5CALL(c, name, H5Aopen, id_, name.c_str(), H5P_DEFAULT));
  Object t(H5CALL(c, name, H5Aget_type, a.id()));
  if (H5CALL(c, name, H5Tget_class, t.id()) != H5T_STRING)
    throw InputError(c.path, "attribute '" + name + "' is not a string");
  Object s(H5CALL(c, name, H5Aget_space, a.id()));
  if (H5CALL(c, name, H5Sget_simple_extent_npoints, s.id()) != 1)
    throw InputError(c.path, "attribute '" + name + "' is not a single string");
  auto v =
      read_string_data(t.id(), 1, c, name, [&](hid_t mt, void* buf) { H5CALL(c, name, H5Aread, a.id(), mt, buf); });
  return v[0];
}

std::optional<double> Object::attr_double(const std::string& name) const {
  return get_scalar_attr<double>(id_, ctx_of(ctx_), name, H5T_NATIVE_DOUBLE);
}

std::optional<std::int64_t> Object::attr_int(const std::string& name) const {
  return get_scalar_attr<std::int64_t>(id_, ctx_of(ctx_), name, H5T_NATIVE_INT64);
}

std::optional<std::vector<double>> Object::attr_doubles(const std::string& name) const {
  return get_attr<double>(id_, ctx_of(ctx_), name, H5T_NATIVE_DOUBLE);
}

std::optional<std::vector<std::int64_t>> Object::attr_ints(const std::string& name) const {
  return get_attr<std::int64_t>(id_, ctx_of(ctx_), name, H5T_NATIVE_INT64);
}

bool Object::has_attr(const std::string& name) const {
  return H5CALL(ctx_of(ctx_), name, H5Aexists, id_, name.c_str()) > 0;
}

// ---------------------------------------------------------------- Group

Group Group::group(const std::string& name) const {
  const Ctx& c = ctx_of(ctx_);
  if (exists(name)) return Group(H5CALL(c, name, H5Gopen2, id_, name.c_str(), H5P_DEFAULT), ctx_);
  Object lcpl = link_create_plist(c, name);
  return Group(H5CALL(c, name, H5Gcreate2, id_, name.c_str(), lcpl.id(), H5P_DEFAULT, H5P_DEFAULT), ctx_);
}

bool Group::exists(const std::string& path) const {
  // H5Lexists fails (rather than saying no) when a parent is missing, so walk the path.
  const Ctx& c = ctx_of(ctx_);
  std::string prefix = path.starts_with('/') ? "/" : "";
  std::size_t at = 0;
  while (at < path.size()) {
    std::size_t end = path.find('/', at);
    if (end == std::string::npos) end = path.size();
    if (end > at) {
      if (!prefix.empty() && prefix.back() != '/') prefix += '/';
      prefix += path.substr(at, end - at);
      if (H5CALL(c, path, H5Lexists, id_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    }
    at = end + 1;
  }
  return true;
}

Dataset Group::create(const std::string& name, Type t, const std::vector<std::int64_t>& dims) const {
  if (t == Type::Str) throw std::logic_error("sink::h5::Group::create: use create_strings for strings");
  const Ctx& c = ctx_of(ctx_);
  std::vector<hsize_t> hd;
  for (auto d : dims) {
    if (d < 0) throw std::runtime_error(c.path + ": negative dimension for '" + name + "'");
    hd.push_back(static_cast<hsize_t>(d));
  }
  Object space = simple_space(hd, c, name);
  // Contiguous: each dataset is written once, and ranks' row blocks map to contiguous file ranges.
  Object dcpl(H5CALL(c, name, H5Pcreate, H5P_DATASET_CREATE));
  if (t == Type::F32) {
    float nan = std::numeric_limits<float>::quiet_NaN();
    H5CALL(c, name, H5Pset_fill_value, dcpl.id(), H5T_NATIVE_FLOAT, &nan);
  } else if (t == Type::F64) {
    double nan = std::numeric_limits<double>::quiet_NaN();
    H5CALL(c, name, H5Pset_fill_value, dcpl.id(), H5T_NATIVE_DOUBLE, &nan);
  }
  Object lcpl = link_create_plist(c, name);
  Dataset d(H5CALL(c, name, H5Dcreate2, id_, name.c_str(), numeric_types(t).first, space.id(), lcpl.id(),
                   dcpl.id(), H5P_DEFAULT),
            ctx_);
  d.type_ = t;
  return d;
}

Dataset Group::open(const std::string& name) const {
  const Ctx& c = ctx_of(ctx_);
  Dataset d(H5CALL(c, name, H5Dopen2, id_, name.c_str(), H5P_DEFAULT), ctx_);
  Object t(H5CALL(c, name, H5Dget_type, d.id()));
  d.type_ = classify(t.id(), c, name);
  return d;
}

Dataset Group::create_strings(const std::string& name, std::int64_t n, std::size_t width) const {
  return create_strings(name, std::vector<std::int64_t>{n}, width);
}

Dataset Group::create_strings(const std::string& name, const std::vector<std::int64_t>& dims, std::size_t width) const {
  const Ctx& c = ctx_of(ctx_);
  std::vector<hsize_t> hd;
  for (auto n : dims) {
    if (n < 0) throw std::runtime_error(c.path + ": negative length for '" + name + "'");
    hd.push_back(static_cast<hsize_t>(n));
  }
  Object type = string_type(std::max<std::size_t>(width, 1), c, name);  // HDF5 has no 0-byte strings
  Object space = simple_space(hd, c, name);
  Object lcpl = link_create_plist(c, name);
  Dataset d(H5CALL(c, name, H5Dcreate2, id_, name.c_str(), type.id(), space.id(), lcpl.id(), H5P_DEFAULT,
                   H5P_DEFAULT),
            ctx_);
  d.type_ = Type::Str;
  return d;
}

void Group::write_strings(const std::string& name, const std::vector<std::string>& v) const {
  std::size_t width = 1;
  for (const auto& s : v) width = std::max(width, s.size());
  Dataset d = create_strings(name, static_cast<std::int64_t>(v.size()), width);
  std::vector<char> buf = pack(v, width, ctx_of(ctx_), name);
  if (!v.empty()) d.write_all(buf.data());
}

std::vector<std::string> Group::read_strings(const std::string& name) const {
  const Ctx& c = ctx_of(ctx_);
  Dataset d = open(name);
  Object t(H5CALL(c, name, H5Dget_type, d.id()));
  if (d.type() != Type::Str) throw std::runtime_error(c.path + ": '" + name + "' is not a string dataset");
  auto dims = d.dims();
  if (dims.size() != 1) throw std::runtime_error(c.path + ": '" + name + "' is not one-dimensional");
  return read_string_data(t.id(), static_cast<std::size_t>(dims[0]), c, name, [&](hid_t mt, void* buf) {
    if (dims[0] > 0) H5CALL(c, name, H5Dread, d.id(), mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  });
}

std::vector<std::string> Group::datasets() const {
  const Ctx& c = ctx_of(ctx_);
  std::vector<std::string> out;
  auto visit = [](hid_t, const char* name, const H5O_info_t* info, void* data) -> herr_t {
    if (info->type == H5O_TYPE_DATASET && std::strcmp(name, ".") != 0)
      static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  H5CALL(c, "", H5Ovisit2, id_, H5_INDEX_NAME, H5_ITER_INC, visit, &out, H5O_INFO_BASIC);
  return out;
}

// ---------------------------------------------------------------- Dataset

void Dataset::make_scale(const std::string& name) const { H5CALL(ctx_of(ctx_), id_, H5DSset_scale, id_, name.c_str()); }

void Dataset::attach_scale(const Dataset& scale, unsigned axis) const {
  H5CALL(ctx_of(ctx_), id_, H5DSattach_scale, id_, scale.id(), axis);
}

bool Dataset::is_scale() const { return H5CALL(ctx_of(ctx_), id_, H5DSis_scale, id_) > 0; }

namespace {
// The memory type for transfers: a string dataset's own type, else the native type matching it.
Object memory_type(hid_t dset, Type t, const Ctx& c) {
  if (t == Type::Str) return Object(H5CALL(c, dset, H5Dget_type, dset));
  return Object(H5CALL(c, dset, H5Tcopy, numeric_types(t).second));
}

// The file space of rows [first, first + n) (nothing selected when n == 0), and their shape.
Object select_rows(hid_t dset, const std::vector<std::int64_t>& d, std::int64_t first, std::int64_t n,
                   const Ctx& c, std::vector<hsize_t>& count) {
  if (d.empty() || first < 0 || n < 0 || first + n > d[0])
    throw std::runtime_error(c.path + ": rows [" + std::to_string(first) + ", " + std::to_string(first + n) +
                             ") are outside '" + name_of(dset) + "'" + (d.empty() ? " (a scalar)" : ""));
  Object fspace(H5CALL(c, dset, H5Dget_space, dset));
  std::vector<hsize_t> start(d.size(), 0);
  count.assign(d.begin(), d.end());
  start[0] = static_cast<hsize_t>(first);
  count[0] = static_cast<hsize_t>(n);
  if (n > 0)
    H5CALL(c, dset, H5Sselect_hyperslab, fspace.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(),
           nullptr);
  else
    H5CALL(c, dset, H5Sselect_none, fspace.id());
  return fspace;
}
}  // namespace

std::vector<std::int64_t> Dataset::dims() const {
  const Ctx& c = ctx_of(ctx_);
  Object space(H5CALL(c, id_, H5Dget_space, id_));
  int rank = H5CALL(c, id_, H5Sget_simple_extent_ndims, space.id());
  std::vector<hsize_t> hd(static_cast<std::size_t>(rank));
  if (rank > 0) H5CALL(c, id_, H5Sget_simple_extent_dims, space.id(), hd.data(), nullptr);
  return {hd.begin(), hd.end()};
}

std::size_t Dataset::string_width() const {
  const Ctx& c = ctx_of(ctx_);
  Object t(H5CALL(c, id_, H5Dget_type, id_));
  if (type_ != Type::Str || H5CALL(c, id_, H5Tis_variable_str, t.id()) > 0)
    throw std::runtime_error(c.path + ": '" + name_of(id_) + "' is not a fixed-length string dataset");
  return H5CALL(c, id_, H5Tget_size, t.id());
}

void Dataset::transfer(std::int64_t mem_space, std::int64_t file_space, const void* data) const {
  const Ctx& c = ctx_of(ctx_);
  Object xfer(H5CALL(c, id_, H5Pcreate, H5P_DATASET_XFER));
  if (parallel()) H5CALL(c, id_, H5Pset_dxpl_mpio, xfer.id(), H5FD_MPIO_COLLECTIVE);
  Object mt = memory_type(id_, type_, c);
  static const char none = 0;  // HDF5 rejects a null buffer even for an empty selection on some versions
  H5CALL(c, id_, H5Dwrite, id_, mt.id(), mem_space, file_space, xfer.id(), data ? data : &none);
  g_last_collective = false;
  if (parallel()) {
    H5D_mpio_actual_io_mode_t mode = H5D_MPIO_NO_COLLECTIVE;
    H5CALL(c, id_, H5Pget_mpio_actual_io_mode, xfer.id(), &mode);
    g_last_collective = mode != H5D_MPIO_NO_COLLECTIVE;
  }
}

void Dataset::write_rows(std::int64_t first, std::int64_t n, const void* data) const {
  const Ctx& c = ctx_of(ctx_);
  auto d = dims();
  std::vector<hsize_t> count;
  Object fspace = select_rows(id_, d, first, n, c, count);
  // A dataset with no elements has no storage, and a collective write to it fails
  // ("addr overflow") in HDF5 1.10; every rank sees the same dims, so all skip.
  if (std::find(d.begin(), d.end(), 0) != d.end()) return;
  Object mspace = simple_space(n > 0 ? count : std::vector<hsize_t>{1}, c, "");
  // A rank with no rows still takes part in the collective transfer, with nothing selected.
  if (n == 0) H5CALL(c, id_, H5Sselect_none, mspace.id());
  transfer(mspace.id(), fspace.id(), data);
}

void Dataset::write_strings(std::int64_t first, const std::vector<std::string>& v) const {
  std::vector<char> buf = pack(v, string_width(), ctx_of(ctx_), name_of(id_));
  std::int64_t per_row = 1;  // strings per row of a dataset of more than one dimension
  const auto d = dims();
  for (std::size_t k = 1; k < d.size(); ++k) per_row *= d[k];
  if (per_row == 0 ? !v.empty() : static_cast<std::int64_t>(v.size()) % per_row != 0)
    throw std::runtime_error(ctx_of(ctx_).path + ": " + std::to_string(v.size()) + " strings are not whole rows of '" +
                             name_of(id_) + "'");
  write_rows(first, per_row == 0 ? 0 : static_cast<std::int64_t>(v.size()) / per_row, buf.data());
}

void Dataset::write_all(const void* data) const {
  if (parallel() && ctx_->rank != 0) return;
  const Ctx& c = ctx_of(ctx_);
  Object mt = memory_type(id_, type_, c);
  // Default transfer: independent, as only rank 0 writes.
  H5CALL(c, id_, H5Dwrite, id_, mt.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
}

void Dataset::read_rows(std::int64_t first, std::int64_t n, void* data) const {
  const Ctx& c = ctx_of(ctx_);
  std::vector<hsize_t> count;
  Object fspace = select_rows(id_, dims(), first, n, c, count);
  if (n == 0) return;
  Object mspace = simple_space(count, c, "");
  Object mt = memory_type(id_, type_, c);
  H5CALL(c, id_, H5Dread, id_, mt.id(), mspace.id(), fspace.id(), H5P_DEFAULT, data);
}

void Dataset::read_all_as(Type want, void* data) const {
  static const char* names[] = {"float32", "float64", "int32", "int64", "uint8", "string"};
  if (type_ != want)
    throw InputError(file_path(), "dataset holds " + std::string(names[int(type_)]) + ", expected " + names[int(want)]);
  read_all(data);
}

void Dataset::read_all(void* data) const {
  const Ctx& c = ctx_of(ctx_);
  Object mt = memory_type(id_, type_, c);
  H5CALL(c, id_, H5Dread, id_, mt.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
}

// ---------------------------------------------------------------- File

namespace {
Object file_access_plist(const Ctx& c, const dist::Comm* comm) {
  Object fapl(H5CALL(c, "", H5Pcreate, H5P_FILE_ACCESS));
  // 1.8 format or later: dense attribute storage, so large attributes (a config's text) fit.
  H5CALL(c, "", H5Pset_libver_bounds, fapl.id(), H5F_LIBVER_V18, H5F_LIBVER_V110);
  // WEAK: the file closes when its last handle does, whatever order the handles go in.
  H5CALL(c, "", H5Pset_fclose_degree, fapl.id(), H5F_CLOSE_WEAK);
  if (c.parallel) {
    H5CALL(c, "", H5Pset_fapl_mpio, fapl.id(), *static_cast<MPI_Comm*>(comm->native()), MPI_INFO_NULL);
    H5CALL(c, "", H5Pset_all_coll_metadata_ops, fapl.id(), true);
    H5CALL(c, "", H5Pset_coll_metadata_write, fapl.id(), true);
  }
  return fapl;
}

std::shared_ptr<Ctx> make_ctx(const std::string& path, const dist::Comm* comm) {
  auto c = std::make_shared<Ctx>();
  c->path = path;
  if (comm && comm->valid() && comm->size() > 1) {
    c->parallel = true;
    c->rank = comm->rank();
  }
  return c;
}
}  // namespace

File File::create(const std::string& path, const dist::Comm* comm) {
  auto ctx = make_ctx(path, comm);
  Object fapl = file_access_plist(*ctx, comm);
  File f;
  f.id_ = H5CALL(*ctx, "", H5Fcreate, path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id());
  f.ctx_ = std::move(ctx);
  return f;
}

File File::open_file(const std::string& path, unsigned flags, const dist::Comm* comm) {
  auto ctx = make_ctx(path, comm);
  Object fapl = file_access_plist(*ctx, comm);
  File f;
  quiet();
  // A file that is missing or not HDF5 is the user's input problem: InputError, exit status 2.
  f.id_ = checked(H5Fopen(path.c_str(), flags, fapl.id()), "H5Fopen", *ctx, "", Kind::Input);
  f.ctx_ = std::move(ctx);
  return f;
}

File File::open_read(const std::string& path) { return open_file(path, H5F_ACC_RDONLY, nullptr); }

File File::open_rw(const std::string& path, const dist::Comm* comm) {
  return open_file(path, H5F_ACC_RDWR, comm);
}

void File::close() {
  if (id_ < 0) return;
  quiet();
  const std::int64_t id = id_;
  id_ = -1;  // a failed close is not retried by the destructor
  // Closing flushes the metadata cache: on a full disk this is where the last writes fail.
  const bool ok = H5Fclose(id) >= 0;
  const Ctx& c = ctx_of(ctx_);
  if (!ok && c.close_error.empty()) c.close_error = innermost_error();
  if (!c.close_error.empty()) {
    c.close_error_reported = true;
    throw std::runtime_error(c.path + ": H5Fclose failed: " + c.close_error);
  }
}

void File::flush() const { H5CALL(ctx_of(ctx_), "", H5Fflush, id_, H5F_SCOPE_GLOBAL); }

bool File::last_write_was_collective() { return g_last_collective; }

}  // namespace sink::h5
