#include "mta/io/accept_backoff.h"

#include <gtest/gtest.h>

#include <vector>

namespace tern::io {
namespace {

TEST(AcceptBackoff, ShortagesAreTheErrorsARetryCannotCure) {
  for (int e : {EMFILE, ENFILE, ENOBUFS, ENOMEM}) EXPECT_TRUE(AcceptBackoff::is_shortage(e)) << e;
  // A client that gave up, or a firewall's verdict: the next accept may work.
  for (int e : {ECONNABORTED, EPERM, EINTR, EAGAIN}) EXPECT_FALSE(AcceptBackoff::is_shortage(e)) << e;
}

TEST(AcceptBackoff, PausesDoubleUpToOneSecond) {
  AcceptBackoff b;
  EXPECT_FALSE(b.paused());
  std::vector<int64_t> pauses;
  for (int i = 0; i < 10; ++i) pauses.push_back(b.failed(i * 100));
  EXPECT_TRUE(b.paused());
  EXPECT_EQ(pauses, (std::vector<int64_t>{10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000}));
}

TEST(AcceptBackoff, ASuccessEndsTheEpisodeAndResetsThePause) {
  AcceptBackoff b;
  EXPECT_FALSE(b.succeeded(5).has_value());  // no episode, nothing to report
  b.failed(1'000);
  b.failed(1'010);
  b.failed(1'030);
  auto episode = b.succeeded(1'070);
  ASSERT_TRUE(episode.has_value());
  EXPECT_EQ(episode->pauses, 3u);
  EXPECT_EQ(episode->duration_ms, 70);
  EXPECT_FALSE(b.paused());
  EXPECT_FALSE(b.succeeded(1'080).has_value());
  EXPECT_EQ(b.failed(2'000), AcceptBackoff::kFirstPauseMs);  // a new episode starts short again
}

}  // namespace
}  // namespace tern::io
