#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "mta/policy/rate_limiter.h"

namespace tern::policy {
namespace {

constexpr int64_t kT0 = 1'000'000'000'000;  // on a bucket boundary (multiple of 10 s)

TEST(RateLimiter, ExactlyPerMinuteEventsAreAllowed) {
  RateLimiter limiter;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 5, kT0 + i)) << i;
  EXPECT_FALSE(limiter.allow(RateKind::connection, "192.0.2.1", 5, kT0 + 5));
  EXPECT_FALSE(limiter.allow(RateKind::connection, "192.0.2.1", 5, kT0 + 6));
}

TEST(RateLimiter, LimitOfOne) {
  RateLimiter limiter;
  EXPECT_TRUE(limiter.allow(RateKind::message, "192.0.2.1", 1, kT0));
  EXPECT_FALSE(limiter.allow(RateKind::message, "192.0.2.1", 1, kT0 + 1));
}

TEST(RateLimiter, EventsAreForgottenAfterTheWindow) {
  RateLimiter limiter;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 3, kT0));
  // Still inside the window at the end of the sixth bucket.
  EXPECT_FALSE(limiter.allow(RateKind::connection, "192.0.2.1", 3, kT0 + 59'999));
  // The bucket of kT0 has left the ring; the refused event at 59.999 s
  // still counts (refused events count too).
  EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 3, kT0 + 60'000));
  EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 3, kT0 + 60'001));
  EXPECT_FALSE(limiter.allow(RateKind::connection, "192.0.2.1", 3, kT0 + 60'002));
}

TEST(RateLimiter, WindowSlidesBucketByBucket) {
  RateLimiter limiter;
  // One event every 10 s: 6 in the window, never more.
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(limiter.allow(RateKind::recipient, "192.0.2.1", 6, kT0 + i * 10'000)) << i;
  // A seventh within the same bucket as the last one is one too many.
  EXPECT_FALSE(limiter.allow(RateKind::recipient, "192.0.2.1", 6, kT0 + 19 * 10'000 + 5'000));
  // At 200 s bucket 14 has left, but the refused event in bucket 19 counts:
  // buckets 15..19 hold 6, plus this one makes 7.
  EXPECT_FALSE(limiter.allow(RateKind::recipient, "192.0.2.1", 6, kT0 + 200'000));
  // After a long pause everything is forgotten.
  EXPECT_TRUE(limiter.allow(RateKind::recipient, "192.0.2.1", 1, kT0 + 10'000'000));
}

TEST(RateLimiter, BurstThenQuietMinute) {
  RateLimiter limiter;
  for (int i = 0; i < 100; ++i) limiter.allow(RateKind::message, "192.0.2.1", 10, kT0 + 25'000 + i);
  EXPECT_FALSE(limiter.allow(RateKind::message, "192.0.2.1", 10, kT0 + 79'999));  // bucket of 25 s still in
  EXPECT_TRUE(limiter.allow(RateKind::message, "192.0.2.1", 10, kT0 + 80'000));
}

TEST(RateLimiter, KindsAndAddressesAreIndependent) {
  RateLimiter limiter;
  EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 1, kT0));
  EXPECT_FALSE(limiter.allow(RateKind::connection, "192.0.2.1", 1, kT0));
  EXPECT_TRUE(limiter.allow(RateKind::message, "192.0.2.1", 1, kT0));
  EXPECT_TRUE(limiter.allow(RateKind::recipient, "192.0.2.1", 1, kT0));
  EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.2", 1, kT0));
  EXPECT_TRUE(limiter.allow(RateKind::connection, "2001:db8::1", 1, kT0));
  EXPECT_FALSE(limiter.allow(RateKind::message, "192.0.2.1", 1, kT0));
  EXPECT_EQ(limiter.tracked_clients(), 3u);
}

TEST(RateLimiter, LimitsMayDifferPerCall) {
  RateLimiter limiter;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.allow(RateKind::recipient, "192.0.2.1", 10, kT0));
  EXPECT_FALSE(limiter.allow(RateKind::recipient, "192.0.2.1", 3, kT0));  // 4 > 3
  EXPECT_TRUE(limiter.allow(RateKind::recipient, "192.0.2.1", 10, kT0));  // 5 <= 10
}

TEST(RateLimiter, ZeroMeansUnlimitedAndStoresNothing) {
  RateLimiter limiter;
  for (int i = 0; i < 10'000; ++i) EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 0, kT0));
  EXPECT_EQ(limiter.tracked_clients(), 0u);
  // Nothing was counted either.
  EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 1, kT0));
}

TEST(RateLimiter, EvictionKeepsTheBoundAndForgetsTheLeastRecentlySeen) {
  RateLimiter limiter(3);
  EXPECT_TRUE(limiter.allow(RateKind::connection, "a", 1, kT0));
  EXPECT_TRUE(limiter.allow(RateKind::connection, "b", 1, kT0));
  EXPECT_TRUE(limiter.allow(RateKind::connection, "c", 1, kT0));
  EXPECT_FALSE(limiter.allow(RateKind::connection, "a", 1, kT0));  // a is now the most recent
  EXPECT_TRUE(limiter.allow(RateKind::connection, "d", 1, kT0));   // evicts b
  EXPECT_EQ(limiter.tracked_clients(), 3u);
  EXPECT_FALSE(limiter.allow(RateKind::connection, "a", 1, kT0));  // kept
  EXPECT_FALSE(limiter.allow(RateKind::connection, "c", 1, kT0));  // kept
  EXPECT_TRUE(limiter.allow(RateKind::connection, "b", 1, kT0));   // forgotten; evicts d
  EXPECT_EQ(limiter.tracked_clients(), 3u);
  for (int i = 0; i < 1000; ++i) limiter.allow(RateKind::message, std::string("x").append(std::to_string(i)), 5, kT0);
  EXPECT_EQ(limiter.tracked_clients(), 3u);
}

TEST(RateLimiter, ClockGoingBackCountsInTheNewestBucket) {
  RateLimiter limiter;
  EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 2, kT0 + 30'000));
  EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 2, kT0));
  EXPECT_FALSE(limiter.allow(RateKind::connection, "192.0.2.1", 2, kT0 + 30'000));
  EXPECT_TRUE(limiter.allow(RateKind::connection, "192.0.2.1", 2, kT0 + 90'000));
}

TEST(RateLimiter, ThreadsShareOneLimiter) {
  RateLimiter limiter;
  std::vector<std::thread> threads;
  std::atomic<int> allowed{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) allowed += limiter.allow(RateKind::connection, "192.0.2.1", 100, kT0);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 100);
}

}  // namespace
TEST(RateLimiterRecent, CountsWithoutCountingAndForgetsOldEvents) {
  RateLimiter limiter;
  const int64_t t0 = 1'000'000;
  EXPECT_EQ(limiter.recent(RateKind::login_failure, "user:alice", t0), 0u);
  for (int i = 0; i < 3; ++i) limiter.allow(RateKind::login_failure, "user:alice", 100, t0 + i);
  EXPECT_EQ(limiter.recent(RateKind::login_failure, "user:alice", t0 + 10), 3u);
  EXPECT_EQ(limiter.recent(RateKind::login_failure, "user:alice", t0 + 10), 3u);  // a look, not an event
  EXPECT_EQ(limiter.recent(RateKind::message, "user:alice", t0 + 10), 0u);
  EXPECT_EQ(limiter.recent(RateKind::login_failure, "user:alice", t0 + 61'000), 0u);
}

}  // namespace tern::policy
