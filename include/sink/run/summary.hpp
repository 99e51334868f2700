// The headline of one or more results.h5 files, read from the files alone: per
// run the sink rate, the strongest sink heads, and perplexity per SSP mode with
// its interval. Printed at the end of sink-run and by sink-summary (a Slurm
// array sweep's files side by side).
#pragma once

#include <string>
#include <vector>

namespace sink {

enum class SummaryFormat { Text, Csv, Markdown };

// Throws InputError naming a file that is missing, not HDF5, or not a complete results.h5.
std::string summarize_results(const std::vector<std::string>& paths, SummaryFormat format, int top_heads = 3);

}  // namespace sink
