// Per-client-IP rate limits: connections, messages and recipients per minute.
//
// One RateLimiter is shared by all workers (one mutex; it is called once
// per connection, message or recipient, not per byte). Time is passed in
// (milliseconds on any monotonic clock), so it is pure and testable.
//
// The window: each (IP, kind) keeps a ring of 6 buckets of 10 s, aligned
// on multiples of 10 s of now_ms. An event counts in the bucket of its time
// and is forgotten when that bucket falls out of the ring, so the count
// covers the current bucket and the five before it: the last 50 to 60 s.
// Every event is counted, refused ones too (a client that keeps hammering
// stays refused until it slows down).
//
// Memory: at most max_clients IPs are tracked (a few dozen octets each plus
// the IP text); tracking a new one when full forgets the one seen least
// recently, which then starts again from zero.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace tern::policy {

// login_failure is keyed by "user:NAME" rather than by IP: failed logins
// per user, across every client (password guessing spread over addresses).
enum class RateKind { connection, message, recipient, login_failure };

class RateLimiter {
 public:
  static constexpr size_t kDefaultMaxClients = 100'000;
  static constexpr int64_t kBucketMs = 10'000;
  static constexpr size_t kBuckets = 6;

  explicit RateLimiter(size_t max_clients = kDefaultMaxClients);
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Counts one event of `kind` from `ip` at now_ms; false when that makes
  // more than `per_minute` in the window. per_minute = 0: no limit, always
  // true, nothing counted or stored.
  bool allow(RateKind kind, std::string_view ip, unsigned per_minute, int64_t now_ms);

  // Events of `kind` counted for `ip` in the window at now_ms (nothing counted).
  unsigned recent(RateKind kind, std::string_view ip, int64_t now_ms) const;

  size_t tracked_clients() const;

 private:
  struct Window {
    int64_t latest_bucket = 0;  // bucket number (now_ms / kBucketMs) of the newest event
    std::array<uint32_t, kBuckets> counts{};
    bool used = false;
  };
  struct Client {
    std::string ip;
    std::array<Window, 4> windows;  // indexed by RateKind
  };

  size_t max_clients_;
  mutable std::mutex mutex_;
  std::list<Client> recent_first_;                                           // most recently seen at the front
  std::unordered_map<std::string_view, std::list<Client>::iterator> by_ip_;  // keys view Client::ip
};

}  // namespace tern::policy
