#include "mta/io/accept_backoff.h"

#include <gtest/gtest.h>

#include <vector>

namespace tern::io {
namespace {

TEST(AcceptBackoff, ShortagesAreTheErrorsARetryCannotCure) {
  for (int e : {EMFILE, ENFILE, ENOBUFS, ENOMEM}) EXPECT_TRUE(AcceptBackoff::is_shortage(e)) << e;
  // A client that gave up, or a firewall's verdict: the next accept may work.
  for (int e : {ECONNABORTED, EPERM, EINTR, EAGAIN}) EXPECT_FALSE(AcceptBackoff::is_shortage(e)) << e;
  EXPECT_STREQ(AcceptBackoff::error_name(EMFILE), "EMFILE");
  EXPECT_STREQ(AcceptBackoff::error_name(ENFILE), "ENFILE");
}

TEST(AcceptBackoff, PausesDoubleUpToOneSecond) {
  AcceptBackoff b;
  EXPECT_FALSE(b.in_episode());
  std::vector<int64_t> pauses;
  for (int i = 0; i < 10; ++i) pauses.push_back(b.failed(i * 100));
  EXPECT_TRUE(b.in_episode());
  EXPECT_EQ(pauses, (std::vector<int64_t>{10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000}));
}

TEST(AcceptBackoff, AnAcceptThatWorksMakesTheNextPauseShort) {
  AcceptBackoff b;
  b.failed(0);
  b.failed(10);
  b.failed(30);
  EXPECT_FALSE(b.succeeded(70).has_value());  // too soon: still the same episode
  EXPECT_EQ(b.failed(71), AcceptBackoff::kFirstPauseMs);
  EXPECT_TRUE(b.in_episode());
}

TEST(AcceptBackoff, AtTheLimitTheEpisodeLastsUntilAcceptsWorkForAQuietSecond) {
  AcceptBackoff b;
  EXPECT_FALSE(b.succeeded(5).has_value());  // no episode, nothing to report
  // Every descriptor that comes back is taken, the next accept fails again;
  // at the longest pause the retry that works comes a second after the
  // failure, and is still not the end.
  int64_t now = 1'000;
  for (int i = 0; i < 9; ++i) {
    now += b.failed(now);
    EXPECT_FALSE(b.succeeded(now).has_value()) << i;
  }
  const int64_t last_failure = now;
  const int64_t pause = b.failed(last_failure);
  EXPECT_FALSE(b.succeeded(last_failure + pause + AcceptBackoff::kQuietMs - 1).has_value());
  auto episode = b.succeeded(last_failure + pause + AcceptBackoff::kQuietMs);
  ASSERT_TRUE(episode.has_value());
  EXPECT_EQ(episode->pauses, 10u);
  EXPECT_EQ(episode->shortage_ms, last_failure - 1'000);
  EXPECT_FALSE(b.in_episode());
  EXPECT_FALSE(b.succeeded(last_failure + 10 * AcceptBackoff::kQuietMs).has_value());
}

}  // namespace
}  // namespace tern::io
