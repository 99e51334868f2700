// One sink-run at a time per output folder: a second run into the same OUT would
// wipe the first's partial results. The lock is a POSIX record lock on OUT/.lock,
// held by rank 0 until the process ends; the kernel drops it when the process dies
// (however: a kill, a crash), so a lock file left by a dead run is no obstacle.
#pragma once

#include <string>

namespace sink {

// Takes the lock on `out` (which must exist) for the rest of this process, or throws
// InputError naming OUT and the process that holds it. Calling it again is a no-op.
void lock_output_folder(const std::string& out);

}  // namespace sink
