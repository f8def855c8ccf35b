// The retry ladder of the system Tern grew from: after a temporary failure
// a message waits in the first-level retry queue (short intervals, a few
// times), then in the second-level retry queue (long intervals) until it is
// too old, when its remaining recipients fail. Pure: no I/O; the random
// jitter comes from the caller's generator so tests can seed it.
#pragma once
#include <cstdint>
#include <random>

#include "queue/envelope.h"

namespace tern::delivery {

struct RetrySettings {
  unsigned first_count = 3;                             // retry.first.count (0..99)
  int64_t first_interval_us = 5LL * 60 * 1'000'000;     // retry.first.interval (0..99 minutes)
  int64_t second_interval_us = 3600LL * 1'000'000;      // retry.second.interval
  int64_t max_age_us = 5LL * 86400 * 1'000'000;         // retry.max_age
  unsigned jitter_percent = 10;                         // each interval is stretched by 0..jitter %
};

struct RetryStep {
  enum class Kind { retry1, retry2, expired } kind = Kind::retry1;
  queue::QueueName queue = queue::QueueName::retry1;  // retry1 or retry2 (meaningless when expired)
  int64_t due_us = 0;                                  // when to try again
};

// After the `failed_attempts`-th attempt (counting this one) ended with a
// temporary failure at `now_us` for a message that arrived at `arrival_us`.
// Attempts 1..first_count go to retry1 after first_interval; later ones to
// retry2 after second_interval. A message at least max_age old expires; a
// due time beyond arrival + max_age is pulled back to it, so the last try
// happens at the deadline rather than never.
RetryStep next_retry(const RetrySettings& settings, uint32_t failed_attempts, int64_t arrival_us, int64_t now_us,
                     std::mt19937_64& rng);

// The shortest wait the ladder gives a deferred message: its first step
// (first_interval, or second_interval without first-level retries).
int64_t shortest_wait_us(const RetrySettings& settings);

}  // namespace tern::delivery
