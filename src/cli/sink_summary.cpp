// sink-summary OUT/results.h5 [more.h5 ...] [--csv | --markdown] [--top N]
// The headline results of finished runs, read from the files alone (the same
// summary sink-run prints at its end); several files (a Slurm array sweep's)
// side by side, one row per run.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sink/run/summary.hpp"
#include "sink/util/error.hpp"
#include "sink/util/version.hpp"

using namespace sink;

static const char* kUsage =
    "usage: sink-summary RESULTS.h5 [RESULTS.h5 ...] [--csv | --markdown] [--top N]\n"
    "  --csv        one row per run, every digit kept (for spreadsheets and pandas.read_csv)\n"
    "  --markdown   the same as a Markdown table\n"
    "  --top N      strongest sink heads listed per run (default 3)\n"
    "  --version    print the version\n"
    "Without --csv/--markdown: a short text summary per run. Sweeps: sink-summary OUT/*/results.h5\n";

int main(int argc, char** argv) {
  try {
    SummaryFormat fmt = SummaryFormat::Text;
    int top = 3;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--csv")
        fmt = SummaryFormat::Csv;
      else if (a == "--markdown")
        fmt = SummaryFormat::Markdown;
      else if (a == "--top") {
        if (i + 1 >= argc) throw InputError("--top", "needs a number");
        top = std::atoi(argv[++i]);
        if (top < 0) throw InputError("--top", "must be at least 0");
      } else if (a == "--help" || a == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (a == "--version") {
        std::printf("sink-summary %s\n", SINK_VERSION);
        return 0;
      } else if (a.rfind("--", 0) == 0) {
        throw InputError(a, "unknown option (see --help)");
      } else {
        files.push_back(a);
      }
    }
    if (files.empty()) throw InputError("", "give at least one results.h5 (see --help)");
    std::fputs(summarize_results(files, fmt, top).c_str(), stdout);
    return 0;
  } catch (const InputError& e) {
    std::fprintf(stderr, "sink-summary: error: %s\n", e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sink-summary: error: %s\n", first_line(e.what()).c_str());
    return 1;
  }
}
