// What makes results.h5 self-describing: the per-document token and eval-set
// fields, the chosen documents' attention maps, and (after the parallel write)
// HDF5 dimension scales and per-dataset attributes from one table, so that
// xarray / netCDF readers see named dimensions with coordinates.
#pragma once

#include <cstdint>
#include <string>

namespace sink {

struct RunOutcome;
class PartialStore;
namespace h5 {
class Group;
}

// docs/token_ids, docs/tokens and docs/<field> (collective: every rank calls it; rows [lo, hi) are this rank's).
void write_doc_tokens(const h5::Group& run, const RunOutcome& o, std::int64_t lo, std::int64_t hi);
// basic/doc_attention_map and basic/shown_doc_index for the documents of docs_to_show (collective).
void write_doc_maps(const h5::Group& run, const RunOutcome& o, const PartialStore& store);

// Opens the closed file `path` alone (one process) and gives every dataset of every run
// group its dimension scales and the attributes long_name, units and (where
// docs/metrics.md has one) symbol. Deterministic: the same file gives the same result.
void annotate_results(const std::string& path);

}  // namespace sink
