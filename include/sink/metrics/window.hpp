// Which rows see the sink under a sliding window: shared by the μ statistics and the C/R
// geometry (metrics) and by SSP's added bias (ssp), so both use one rule. Header-only.
#pragma once

#include <algorithm>
#include <cstdint>

#include "sink/model/spec.hpp"

namespace sink {

// Of the n rows s < i ≤ s + n, how many see the sink s under layer `layer`'s window W: query i
// sees key j iff i − W < j ≤ i (the engine's mask, as HF's), so the rows s + 1 … s + W − 1; all n
// rows for full attention (W = 0). They are always the first rows after the sink.
inline std::int64_t visible_rows(const ModelSpec& spec, int layer, std::int64_t n) {
  const std::int64_t W = spec.sliding_window.empty() ? 0 : spec.sliding_window.at(layer);
  return W > 0 ? std::min<std::int64_t>(n, W - 1) : n;
}

}  // namespace sink
