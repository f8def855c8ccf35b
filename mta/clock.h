// The wall clock in microseconds since the epoch: the time base of queue
// IDs, envelopes, the schedule, the POP window and the logs.
#pragma once
#include <chrono>
#include <cstdint>

namespace tern {

inline int64_t wall_clock_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace tern
