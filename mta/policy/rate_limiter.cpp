#include "mta/policy/rate_limiter.h"

#include <algorithm>
#include <limits>

namespace tern::policy {

namespace {

int64_t bucket_of(int64_t now_ms, int64_t bucket_ms) {
  int64_t b = now_ms / bucket_ms;
  if (now_ms % bucket_ms != 0 && now_ms < 0) --b;  // floor, also before the clock's epoch
  return b;
}

size_t slot_of(int64_t bucket, size_t buckets) {
  int64_t m = bucket % static_cast<int64_t>(buckets);
  if (m < 0) m += static_cast<int64_t>(buckets);
  return static_cast<size_t>(m);
}

}  // namespace

RateLimiter::RateLimiter(size_t max_clients) : max_clients_(std::max<size_t>(1, max_clients)) {}

unsigned RateLimiter::recent(RateKind kind, std::string_view ip, int64_t now_ms) const {
  std::lock_guard lock(mutex_);
  auto found = by_ip_.find(ip);
  if (found == by_ip_.end()) return 0;
  const Window& w = found->second->windows[static_cast<size_t>(kind)];
  if (!w.used) return 0;
  const int64_t bucket = bucket_of(now_ms, kBucketMs);
  // Only buckets still inside the window count (older ones are cleared lazily).
  const int64_t oldest = std::max(bucket, w.latest_bucket) - static_cast<int64_t>(kBuckets) + 1;
  uint64_t total = 0;
  for (int64_t b = std::max(oldest, w.latest_bucket - static_cast<int64_t>(kBuckets) + 1); b <= w.latest_bucket; ++b)
    total += w.counts[slot_of(b, kBuckets)];
  return static_cast<unsigned>(std::min<uint64_t>(total, std::numeric_limits<unsigned>::max()));
}

size_t RateLimiter::tracked_clients() const {
  std::lock_guard lock(mutex_);
  return by_ip_.size();
}

bool RateLimiter::allow(RateKind kind, std::string_view ip, unsigned per_minute, int64_t now_ms) {
  if (per_minute == 0) return true;
  std::lock_guard lock(mutex_);

  auto found = by_ip_.find(ip);
  if (found != by_ip_.end()) {
    recent_first_.splice(recent_first_.begin(), recent_first_, found->second);
  } else {
    while (by_ip_.size() >= max_clients_) {
      by_ip_.erase(recent_first_.back().ip);
      recent_first_.pop_back();
    }
    recent_first_.push_front(Client{std::string(ip), {}});
    by_ip_.emplace(recent_first_.front().ip, recent_first_.begin());
  }
  Window& w = recent_first_.front().windows[static_cast<size_t>(kind)];

  const int64_t bucket = bucket_of(now_ms, kBucketMs);
  if (!w.used) {
    w.used = true;
    w.latest_bucket = bucket;
  } else if (bucket > w.latest_bucket) {
    // Clear the buckets between the newest event and now; all of them after a long pause.
    const int64_t gap = std::min<int64_t>(bucket - w.latest_bucket, static_cast<int64_t>(kBuckets));
    for (int64_t b = bucket - gap + 1; b <= bucket; ++b) w.counts[slot_of(b, kBuckets)] = 0;
    w.latest_bucket = bucket;
  }
  // A clock that went back counts in the newest bucket.
  const int64_t slot_bucket = std::max(bucket, w.latest_bucket);
  uint32_t& slot = w.counts[slot_of(slot_bucket, kBuckets)];
  if (slot < std::numeric_limits<uint32_t>::max()) ++slot;

  uint64_t total = 0;
  for (uint32_t c : w.counts) total += c;
  return total <= per_minute;
}

}  // namespace tern::policy
