// Fault injection for the reliability tests, driven by one environment
// variable:
//
//   SINK_FAULT=ACTION@POINT[#INDEX][:rank=R]
//
// ACTION `kill` raises SIGKILL (a node failure: no handler, no cleanup), `input`
// throws an InputError (one rank's bad input, found after the ranks split), `oom`
// asks the allocator for 4 TiB (a real failed allocation, handled like any
// other out-of-memory error), and `skip` skips a check (results.space_check:
// the free-space check before results.h5, so that a full disk is met inside
// HDF5 itself). POINT names a place in the pipeline (fault_point calls), INDEX
// the document or run it applies to, R the world rank; without them, the first
// pass through the point on any rank. Unset, a fault point costs one branch on
// a cached flag.
//
// Points: doc.computed#j (document j computed, not yet recorded),
// doc.recorded#j (its partial result and bucket checkpoint written),
// results.created (results file created, nothing written), results.run#r (run r
// written), results.closed (file whole under its temporary name),
// results.renamed (under its final name).
#pragma once

#include <cstdint>

namespace sink::fault {

// The action requested at this point ("" if none): "kill" never returns.
const char* at(const char* point, std::int64_t index = -1);

// Sets this process's rank for `:rank=R` (called once MPI is up).
void set_rank(int rank);

}  // namespace sink::fault
