// What a run measured, merged from every thread, and its two renderings:
// the text summary and the JSON report (fields described in
// docs/tern-bench.md). Pure.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tools/loadkit/histogram.h"
#include "tools/tern_bench/options.h"

namespace tern::bench {

enum Phase : unsigned { kConnect, kBanner, kEnvelope, kData, kMessage, kPhaseCount };
const char* phase_name(unsigned phase);

// One thread's counters; latencies in microseconds.
struct Stats {
  uint64_t sent = 0;               // transactions started (each gets exactly one outcome below)
  uint64_t accepted = 0;           // 2xx after the content
  uint64_t temp_failed = 0;        // 4xx at any point of the transaction
  uint64_t perm_failed = 0;        // 5xx at any point of the transaction
  uint64_t connection_errors = 0;  // refused, timeout, unexpected close, TLS, malformed reply
  uint64_t recipients_accepted = 0;
  uint64_t recipients_rejected = 0;
  uint64_t connections_opened = 0;  // TCP connects that succeeded
  uint64_t connect_failures = 0;    // TCP connects that failed
  uint64_t bytes_accepted = 0;      // message octets (as sent) of accepted messages
  std::array<loadkit::LatencyHistogram, kPhaseCount> latency{};
  std::vector<uint64_t> accepted_per_second;  // [i]: accepted during second i of the run
  std::map<std::string, uint64_t> errors;      // "connect: Connection refused" -> count

  void count_accepted_at(double seconds_since_start);
  void merge(const Stats& other);
};

// What the report says about the run besides the counters.
struct RunInfo {
  Options options;
  unsigned threads = 1;
  std::string run_id;
  double elapsed_s = 0;  // first connect to last outcome
  double cpu_user_s = 0;
  double cpu_sys_s = 0;
  bool pipelining_used = false;  // at least one connection pipelined
  bool bdat_used = false;        // at least one message went with BDAT
  bool starttls_used = false;    // at least one connection ran TLS
};

double cpu_percent_of_one_core(const RunInfo& info);
std::string format_text(const Stats& stats, const RunInfo& info);
std::string format_json(const Stats& stats, const RunInfo& info);

}  // namespace tern::bench
