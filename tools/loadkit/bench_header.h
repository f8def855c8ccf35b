// The header tern-bench puts in every message so that a receiver (tern-sink)
// can compute end-to-end latency: the send time in microseconds since the
// Unix epoch.
//   X-Tern-Bench-Sent: 1795398000123456
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace tern::loadkit {

inline constexpr std::string_view kSentHeader = "X-Tern-Bench-Sent";

// Microseconds since the epoch from one header line ("Name: value", no
// CRLF); nullopt when the line is not that header or the value is not a number.
std::optional<int64_t> parse_sent_header(std::string_view line);

// Now, in microseconds since the epoch (CLOCK_REALTIME: the sender and the
// receiver may be different processes).
int64_t unix_micros();

}  // namespace tern::loadkit
