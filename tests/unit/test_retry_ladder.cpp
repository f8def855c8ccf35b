#include "mta/delivery/retry_ladder.h"

#include <gtest/gtest.h>

namespace tern::delivery {
namespace {

constexpr int64_t kMinute = 60LL * 1'000'000;

TEST(RetryLadder, FirstLevelThenSecondLevel) {
  RetrySettings s;
  s.jitter_percent = 0;
  std::mt19937_64 rng(7);
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    RetryStep step = next_retry(s, attempt, 0, 10 * kMinute, rng);
    EXPECT_EQ(step.kind, RetryStep::Kind::retry1) << attempt;
    EXPECT_EQ(step.queue, queue::QueueName::retry1);
    EXPECT_EQ(step.due_us, 10 * kMinute + s.first_interval_us);
  }
  RetryStep step = next_retry(s, 4, 0, 10 * kMinute, rng);
  EXPECT_EQ(step.kind, RetryStep::Kind::retry2);
  EXPECT_EQ(step.queue, queue::QueueName::retry2);
  EXPECT_EQ(step.due_us, 10 * kMinute + s.second_interval_us);
}

TEST(RetryLadder, ZeroFirstLevelRetriesGoStraightToTheSecond) {
  RetrySettings s;
  s.first_count = 0;
  std::mt19937_64 rng(7);
  EXPECT_EQ(next_retry(s, 1, 0, 0, rng).kind, RetryStep::Kind::retry2);
}

TEST(RetryLadder, ExpiresAtMaxAgeAndPullsTheLastTryToTheDeadline) {
  RetrySettings s;
  s.jitter_percent = 0;
  std::mt19937_64 rng(7);
  EXPECT_EQ(next_retry(s, 9, 0, s.max_age_us, rng).kind, RetryStep::Kind::expired);
  EXPECT_EQ(next_retry(s, 9, 0, s.max_age_us + 1, rng).kind, RetryStep::Kind::expired);
  RetryStep late = next_retry(s, 9, 0, s.max_age_us - kMinute, rng);
  EXPECT_EQ(late.kind, RetryStep::Kind::retry2);
  EXPECT_EQ(late.due_us, s.max_age_us);
}

TEST(RetryLadder, JitterOnlyStretchesAndStaysWithinItsPercent) {
  RetrySettings s;
  s.jitter_percent = 10;
  std::mt19937_64 rng(42);
  int64_t lowest = INT64_MAX, highest = 0;
  for (int i = 0; i < 2000; ++i) {
    const int64_t wait = next_retry(s, 1, 0, 0, rng).due_us;
    lowest = std::min(lowest, wait);
    highest = std::max(highest, wait);
  }
  EXPECT_GE(lowest, s.first_interval_us);
  EXPECT_LE(highest, s.first_interval_us + s.first_interval_us / 10);
  // Spread, not lockstep: the draws cover most of the window.
  EXPECT_GT(highest - lowest, s.first_interval_us / 20);
}

TEST(RetryLadder, ShortestWaitIsTheFirstStep) {
  RetrySettings s;
  EXPECT_EQ(shortest_wait_us(s), s.first_interval_us);
  s.first_count = 0;
  EXPECT_EQ(shortest_wait_us(s), s.second_interval_us);
}

}  // namespace
}  // namespace tern::delivery
