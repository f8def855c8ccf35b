// What tern-sink counts, and its two renderings: the human summary and the
// JSON report. Pure: no I/O. Each worker keeps its own SinkStats (no
// sharing on the hot path); a summary merges copies of them.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "tools/loadkit/histogram.h"
#include "tools/tern_sink/fault_plan.h"

namespace tern::sink {

struct SinkStats {
  uint64_t connections = 0;
  uint64_t messages = 0;      // accepted: answered 250 after their content
  uint64_t recipients = 0;    // of accepted messages
  uint64_t bytes = 0;         // content octets of accepted messages (after dot-unstuffing)
  uint64_t store_errors = 0;  // --maildir/--mbox writes that failed (answered 451)
  // Arrival of the first and last accepted message, microseconds since the
  // epoch; 0 when none.
  int64_t first_message_us = 0;
  int64_t last_message_us = 0;
  std::array<uint64_t, kPointCount> faults{};  // injected replies
  std::array<uint64_t, kPointCount> delays{};  // delayed replies
  std::array<uint64_t, kPointCount> drops{};   // dropped connections
  // Arrival minus the X-Tern-Bench-Sent stamp, microseconds.
  loadkit::LatencyHistogram e2e_us;

  void record_message(int64_t arrival_us, uint64_t recipients, uint64_t bytes);
  void merge(const SinkStats& other);
  // The active window, first to last message, in seconds (0 with < 2 messages).
  double active_seconds() const;
  // messages / active_seconds(); 0 when the window is empty.
  double messages_per_second() const;
};

// Several lines, each ending in '\n'.
std::string format_summary(const SinkStats& s);
// One JSON object and '\n'; see docs/tern-sink.md for every field.
std::string format_json(const SinkStats& s);

}  // namespace tern::sink
