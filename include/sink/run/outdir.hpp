// The output folder around a run: what an existing results.h5 allows, and the
// partial results once the file is complete.
#pragma once

#include <string>

namespace sink {

// Throws InputError (one line) when OUT/results.h5 is a complete results file of a config
// other than `config_text` and `overwrite` is false; a torn or foreign file is no result.
void check_existing_results(const std::string& out_dir, const std::string& config_text, bool overwrite);

// Whether OUT/results.h5 is a complete results file of exactly this config.
bool results_complete_for(const std::string& out_dir, const std::string& config_text);

// Removes OUT/.partial (results.h5 is complete and holds everything it had). A failure
// only warns: the results are there.
void remove_partial(const std::string& out_dir);

}  // namespace sink
