// sink-run CONFIG.yaml [--set key=value ...] [--dry-run] [--resume] [--overwrite] [--threads N] ... (--help)
// One process is one rank; under mpirun/srun every rank runs this same main.
#include <cstdio>
#include <cstring>
#include <string>

#include "sink/cli/args.hpp"
#include "sink/dist/comm.hpp"
#include "sink/run/rank_errors.hpp"
#include "sink/run/run.hpp"
#include "sink/util/error.hpp"
#include "sink/util/version.hpp"

using namespace sink;

static const char* kUsage =
    "usage: sink-run CONFIG.yaml [--set key=value ...] [--dry-run] [--resume] [--overwrite] [--keep-partial]\n"
    "                [--threads N] [--bucket-size N] [--no-progress] [--progress-seconds S]\n"
    "  --set k=v         override a config key (dotted keys reach into maps: steps.viz=false)\n"
    "  --dry-run         validate the config, models' configs, tokenizers and eval sets; load no weights\n"
    "  --resume          continue a killed run: compute only the documents missing from OUT/.partial\n"
    "  --overwrite       replace a complete OUT/results.h5 written from another config (refused otherwise)\n"
    "  --keep-partial    keep OUT/.partial after results.h5 is complete (removed by default)\n"
    "  --threads N       intra-op threads per rank (default: cores / ranks)\n"
    "  --bucket-size N   documents per bucket, the unit of work and of checkpoints (default 4)\n"
    "  --no-progress     no progress on stderr (default: a bar on a terminal, else a line every 10 %)\n"
    "  --progress-seconds S  in a log, also a progress line at least every S seconds (default 60)\n"
    "  --version         print the version and the git commit it was built from\n"
    "  -h, --help        this text\n"
    "At the end, rank 0 prints a summary of the results (as sink-summary does) and the path of results.h5.\n";

int main(int argc, char** argv) {
  dist::Env env(&argc, &argv);
  auto world = dist::Comm::world();
  int rc = 0;
  try {
    RunFlags f;
    std::vector<std::string> rest;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--set") {
        if (i + 1 >= argc) throw InputError("--set", "needs key=value");
        f.sets.push_back(argv[++i]);
      } else if (a.rfind("--set=", 0) == 0) {
        f.sets.push_back(a.substr(6));
      } else if (a == "--dry-run") {
        f.dry_run = true;
      } else if (a == "--resume") {
        f.resume = true;
      } else if (a == "--no-progress") {
        f.progress = false;
      } else if (a == "--progress-seconds") {
        if (i + 1 >= argc) throw InputError("--progress-seconds", "needs a number of seconds");
        f.progress_seconds = std::atof(argv[++i]);
        if (!(f.progress_seconds > 0)) throw InputError("--progress-seconds", "must be a positive number of seconds");
      } else if (a == "--threads") {
        if (i + 1 >= argc) throw InputError("--threads", "needs a number");
        f.threads = static_cast<int>(parse_int_flag("--threads", argv[++i], 1, 4096));
      } else if (a == "--bucket-size") {
        if (i + 1 >= argc) throw InputError("--bucket-size", "needs a number");
        f.bucket_size = parse_int_flag("--bucket-size", argv[++i], 1, std::int64_t(1) << 30);
      } else if (a == "--overwrite") {
        f.overwrite = true;
      } else if (a == "--keep-partial") {
        f.keep_partial = true;
      } else if (a == "--version") {
        if (world.rank() == 0) std::printf("sink-run %s (%s)\n", SINK_VERSION, SINK_GIT_COMMIT);
        return 0;
      } else if (a == "--help" || a == "-h") {
        if (world.rank() == 0) std::fputs(kUsage, stdout);
        return 0;
      } else if (a.rfind("--", 0) == 0) {
        throw InputError(a, "unknown option (see --help)");
      } else {
        rest.push_back(a);
      }
    }
    if (rest.size() != 1) throw InputError("", "give exactly one config file (see --help)");
    f.config_path = rest[0];
    rc = sink_run(f, world);
  } catch (const InputError& e) {
    // One rank's own error after the split: the others may wait for it in a collective.
    if (world.size() > 1 && in_rank_local_phase() && !e.on_every_rank())
      end_job_from_this_rank("sink-run", e.what(), kExitBadInput);
    if (world.rank() == 0) std::fprintf(stderr, "sink-run: error: %s\n", e.what());
    rc = kExitBadInput;
  } catch (const ResourceError& e) {
    // A full disk, a read-only output, memory exhausted: finished documents are kept for --resume.
    if (e.on_every_rank() || world.size() == 1) {
      if (world.rank() == 0) std::fprintf(stderr, "sink-run: error: %s\n", e.what());
      // HDF5 may hold a file it failed to close (a full disk); finalizing would try again.
      if (world.size() == 1) dist::Env::exit_without_finalize(kExitResource);
      rc = kExitResource;
    } else {
      std::fprintf(stderr, "sink-run: rank %d: error: %s\n", world.rank(), e.what());
      dist::Env::abort(kExitResource);  // the other ranks may be waiting in a collective
    }
  } catch (const std::exception& e) {
    if (is_out_of_memory(e)) {  // outside a document (loading weights): nothing computed yet
      std::fprintf(stderr, "sink-run: rank %d: error: out of memory: %s\n", world.rank(), first_line(e.what()).c_str());
      if (world.size() == 1) dist::Env::exit_without_finalize(kExitResource);
      dist::Env::abort(kExitResource);
    }
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg = msg.substr(0, nl);
    std::fprintf(stderr, "sink-run: rank %d: internal error: %s\n", world.rank(), msg.c_str());
    dist::Env::abort(1);  // the other ranks may be waiting in a collective
  }
  return rc;
}
