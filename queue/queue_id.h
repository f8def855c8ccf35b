// Queue IDs: 16 characters, time-ordered in byte order (oldest sorts first),
// unique across threads and restarts of one host.
#pragma once
#include <cstdint>
#include <string>

namespace tern::queue {

// Thread-safe. Microsecond clock plus a process-wide sequence.
std::string new_queue_id();
// Arrival time encoded in an ID, microseconds since the epoch; 0 if malformed.
int64_t queue_id_time_us(const std::string& id);
bool is_queue_id(const std::string& s);

}  // namespace tern::queue
