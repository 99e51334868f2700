// Errors after sink-run's ranks split. Before the split every rank reads the
// same inputs and meets the same InputError, so rank 0 reports it and all exit 2.
// After it a rank works on its own documents, and an error there is its own: the
// other ranks would wait for it forever in the next collective. So such an error
// either is agreed on by the group at a point every rank of it reaches
// (agree_on_errors), or ends the whole job through MPI_Abort once its one line is
// printed (end_job_from_this_rank). No rank waits forever.
#pragma once

#include <exception>
#include <functional>
#include <string>

namespace sink {
namespace dist {
class Comm;
}

// Marks whether this process is in the rank-local phase (between the split and the
// assembly of the results); sink-run's main reads it when an InputError reaches it.
void set_rank_local_phase(bool on);
bool in_rank_local_phase();

// Runs `fn` on every rank of `group`, then agrees on whether it failed anywhere
// (InputError, ResourceError, out of memory). If it did: when the group is the
// whole world, the first failing rank's error is thrown on every rank, flagged
// on_every_rank (rank 0 prints it, every rank exits with its status); otherwise
// the group's rank 0 prints the line and the job ends through MPI_Abort (the
// other groups are mid-run). Other exceptions pass through unchanged.
void agree_on_errors(const dist::Comm& group, const dist::Comm& world, const char* tool,
                     const std::function<void()>& fn);

// Prints "TOOL: error: MESSAGE" on this rank's stderr and ends every rank with `code`.
[[noreturn]] void end_job_from_this_rank(const char* tool, const std::string& message, int code);

}  // namespace sink
