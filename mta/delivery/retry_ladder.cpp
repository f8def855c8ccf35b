#include "mta/delivery/retry_ladder.h"

#include <algorithm>

namespace tern::delivery {

RetryStep next_retry(const RetrySettings& settings, uint32_t failed_attempts, int64_t arrival_us, int64_t now_us,
                     std::mt19937_64& rng) {
  RetryStep step;
  const int64_t deadline = arrival_us + settings.max_age_us;
  if (now_us >= deadline) {
    step.kind = RetryStep::Kind::expired;
    return step;
  }
  const bool first_level = failed_attempts <= settings.first_count;
  step.kind = first_level ? RetryStep::Kind::retry1 : RetryStep::Kind::retry2;
  step.queue = first_level ? queue::QueueName::retry1 : queue::QueueName::retry2;
  int64_t interval = first_level ? settings.first_interval_us : settings.second_interval_us;
  if (settings.jitter_percent > 0 && interval > 0) {
    // Stretch only: a burst of failures spreads out, and no retry comes
    // sooner than the configured interval.
    std::uniform_int_distribution<int64_t> stretch(0, interval * settings.jitter_percent / 100);
    interval += stretch(rng);
  }
  step.due_us = std::min(now_us + interval, deadline);
  return step;
}

int64_t shortest_wait_us(const RetrySettings& settings) {
  return settings.first_count > 0 ? settings.first_interval_us : settings.second_interval_us;
}

}  // namespace tern::delivery
