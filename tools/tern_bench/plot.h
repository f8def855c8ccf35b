// --plot: a self-contained SVG with two charts: accepted messages per second
// over the run, and the latency distribution of the envelope, data and
// message phases as percentile curves (x axis log-scaled in 1/(1-p), as
// HdrHistogram plots are: 0%, 90%, 99%, 99.9%, ...). Pure.
#pragma once
#include <string>

#include "tools/tern_bench/report.h"

namespace tern::bench {

std::string render_svg(const Stats& stats, const RunInfo& info);

}  // namespace tern::bench
