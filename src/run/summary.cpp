// See include/sink/run/summary.hpp. Every number comes from the file's own
// datasets and attributes (docs/results.md), so the summary of a file is the
// same wherever and whenever it is printed.
#include "sink/run/summary.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "sink/store/h5.hpp"
#include "sink/util/error.hpp"

namespace sink {
namespace {

const std::vector<std::string> kModes = {"original", "ssp_bias", "ssp_drop", "zero", "random"};
constexpr std::int64_t kFewDocs = 10;  // a bootstrap interval over fewer documents is not worth much

struct Head {
  std::int64_t layer, head;
  double alpha;
};

struct Mode {
  double ppl = NAN, ratio = NAN, lo = NAN, hi = NAN;
};

struct RunRow {
  std::string file, run, model;
  std::int64_t n_docs = 0;
  double epsilon = NAN, sink_rate = NAN, sink_rate_gu = NAN;
  std::vector<Head> heads;
  std::map<std::string, Mode> modes;
};

std::vector<std::string> split(const std::string& s, char c) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, c);)
    if (!x.empty()) out.push_back(x);
  return out;
}

std::vector<RunRow> read_file(const std::string& path, int top) {
  auto f = h5::File::open_read(path);
  if (f.attr_string("tool").value_or("") != "sink") throw InputError(path, "not a sink results file (no tool = sink)");
  if (f.attr_int("complete").value_or(0) != 1) throw InputError(path, "incomplete results file (complete != 1)");
  std::vector<RunRow> rows;
  for (const auto& run : split(f.attr_string("runs").value_or(""), ',')) {
    auto g = f.group(run);
    RunRow r;
    r.file = path;
    r.run = run;
    r.model = g.attr_string("model").value_or("");
    r.n_docs = g.attr_int("n_docs").value_or(0);
    auto s = g.group("summary");
    r.epsilon = s.attr_double("epsilon").value_or(NAN);
    r.sink_rate = s.attr_double("sink_rate").value_or(NAN);
    r.sink_rate_gu = s.attr_double("sink_rate_gu").value_or(NAN);
    auto ds = g.open("summary/sink_score_mean");
    const auto d = ds.dims();
    std::vector<float> a(static_cast<std::size_t>(d.at(0) * d.at(1)));
    ds.read_all(a.data());
    for (std::int64_t l = 0; l < d[0]; ++l)
      for (std::int64_t h = 0; h < d[1]; ++h)
        if (!std::isnan(a[l * d[1] + h])) r.heads.push_back({l, h, a[l * d[1] + h]});
    std::stable_sort(r.heads.begin(), r.heads.end(), [](const Head& x, const Head& y) { return x.alpha > y.alpha; });
    if (static_cast<int>(r.heads.size()) > top) r.heads.resize(top);
    for (const auto& m : kModes) {
      if (!g.exists("ssp/" + m)) continue;
      auto mg = g.group("ssp/" + m);
      Mode x;
      x.ppl = mg.attr_double("ppl").value_or(NAN);
      x.ratio = mg.attr_double("ppl_ratio").value_or(NAN);
      x.lo = mg.attr_double("ppl_ratio_ci95_low").value_or(NAN);
      x.hi = mg.attr_double("ppl_ratio_ci95_high").value_or(NAN);
      r.modes[m] = x;
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

std::string num(double v, const char* fmt) {
  if (std::isnan(v)) return "";
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

std::string heads_text(const RunRow& r, const char* fmt) {
  std::string s;
  for (const auto& h : r.heads)
    s += (s.empty() ? "" : " ") +
         ("L" + std::to_string(h.layer) + "H" + std::to_string(h.head) + "=" + num(h.alpha, fmt));
  return s;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::string summarize_results(const std::vector<std::string>& paths, SummaryFormat format, int top_heads) {
  std::vector<RunRow> rows;
  for (const auto& p : paths)
    for (auto& r : read_file(p, top_heads)) rows.push_back(std::move(r));
  std::vector<std::string> modes;  // those any run has, in the fixed order
  for (const auto& m : kModes)
    if (std::any_of(rows.begin(), rows.end(), [&](const RunRow& r) { return r.modes.count(m); })) modes.push_back(m);
  std::ostringstream o;
  if (format == SummaryFormat::Text) {
    for (const auto& r : rows) {
      o << r.run << " (" << r.model << ", " << r.n_docs << " documents; " << r.file << ")\n";
      o << "  sink rate " << num(r.sink_rate, "%.4g") << " (heads with mean α > ε = " << num(r.epsilon, "%.4g")
        << "), Gu et al.'s protocol " << num(r.sink_rate_gu, "%.4g") << "\n";
      o << "  strongest sink heads (mean α): " << heads_text(r, "%.4g") << "\n";
      for (const auto& m : kModes) {  // in the fixed order, not the map's
        if (!r.modes.count(m)) continue;
        const Mode& x = r.modes.at(m);
        o << "  " << m << ": perplexity " << num(x.ppl, "%.6g");
        if (m != "original")
          o << ", ratio " << num(x.ratio, "%.4g") << " [95% CI " << num(x.lo, "%.4g") << ", " << num(x.hi, "%.4g")
            << "]";
        o << "\n";
      }
      if (r.n_docs < kFewDocs)
        o << "  warning: the " << (r.modes.empty() ? "means" : "intervals") << " rest on " << r.n_docs
          << " documents (fewer than " << kFewDocs << "); read them as rough\n";
    }
    return o.str();
  }
  // One row per run, the runs of every file side by side.
  std::vector<std::string> head = {"file",    "run",       "model",         "n_docs",
                                   "epsilon", "sink_rate", "sink_rate_gu", "top_heads"};
  for (const auto& m : modes) {
    head.push_back("ppl_" + m);
    if (m != "original")
      for (const char* k : {"ppl_ratio_", "ci95_low_", "ci95_high_"}) head.push_back(k + m);
  }
  // CSV keeps every digit (round trip); markdown is for reading.
  const char* fmt = format == SummaryFormat::Csv ? "%.17g" : "%.4g";
  std::vector<std::vector<std::string>> table;
  for (const auto& r : rows) {
    std::vector<std::string> c = {r.file,
                                  r.run,
                                  r.model,
                                  std::to_string(r.n_docs),
                                  num(r.epsilon, fmt),
                                  num(r.sink_rate, fmt),
                                  num(r.sink_rate_gu, fmt),
                                  heads_text(r, fmt)};
    for (const auto& m : modes) {
      auto it = r.modes.find(m);
      const Mode x = it == r.modes.end() ? Mode{} : it->second;
      c.push_back(num(x.ppl, format == SummaryFormat::Csv ? fmt : "%.6g"));
      if (m != "original")
        for (double v : {x.ratio, x.lo, x.hi}) c.push_back(num(v, fmt));
    }
    table.push_back(std::move(c));
  }
  if (format == SummaryFormat::Csv) {
    for (std::size_t k = 0; k < head.size(); ++k) o << (k ? "," : "") << head[k];
    o << "\n";
    for (const auto& c : table) {
      for (std::size_t k = 0; k < c.size(); ++k) o << (k ? "," : "") << csv_field(c[k]);
      o << "\n";
    }
  } else {
    auto line = [&](const std::vector<std::string>& c) {
      o << "|";
      for (const auto& x : c) o << " " << x << " |";
      o << "\n";
    };
    line(head);
    o << "|";
    for (std::size_t k = 0; k < head.size(); ++k) o << "---|";
    o << "\n";
    for (const auto& c : table) line(c);
    for (const auto& r : rows)
      if (!r.modes.empty() && r.n_docs < kFewDocs)
        o << "\nWarning: " << r.run << "'s intervals rest on " << r.n_docs << " documents (fewer than " << kFewDocs
          << ").\n";
  }
  return o.str();
}

}  // namespace sink
