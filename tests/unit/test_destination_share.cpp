#include "mta/delivery/destination_share.h"

#include <gtest/gtest.h>

namespace tern::delivery {
namespace {

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kMaxWait = 300 * kSecond;

using Hops = std::vector<std::string>;

TEST(DestinationShares, ZeroMeansNoBoundOfItsOwn) {
  DestinationShares shares(0, kMaxWait);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(shares.admit({"slow.test"}, kSecond).admitted);
  EXPECT_EQ(shares.held_by("slow.test"), 0u);
  EXPECT_EQ(shares.put_back_total(), 0u);
}

TEST(DestinationShares, AFullDestinationPutsBackItsMailAndNotOthers) {
  DestinationShares shares(3, kMaxWait);
  const int64_t now = 10 * kSecond;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(shares.admit({"slow.test"}, now).admitted);
  EXPECT_EQ(shares.held_by("slow.test"), 3u);

  auto first = shares.admit({"slow.test"}, now);
  EXPECT_FALSE(first.admitted);
  EXPECT_GT(first.due_us, now);
  EXPECT_LE(first.due_us, now + kMaxWait);
  EXPECT_EQ(first.episodes_begun, std::vector<size_t>{0});  // logged once per episode
  auto second = shares.admit({"slow.test"}, now);
  EXPECT_FALSE(second.admitted);
  EXPECT_TRUE(second.episodes_begun.empty());
  EXPECT_GT(second.due_us, first.due_us);  // spread out, not all due at once

  EXPECT_TRUE(shares.admit({"fast.test"}, now).admitted);
  EXPECT_EQ(shares.held_by("slow.test"), 3u);
  EXPECT_EQ(shares.held_by("fast.test"), 1u);
  EXPECT_EQ(shares.put_back_total(), 2u);
  EXPECT_EQ(shares.destinations_at_share(), 1u);
}

TEST(DestinationShares, AMessageWithSeveralDestinationsWaitsForTheFullOne) {
  DestinationShares shares(1, kMaxWait);
  const int64_t now = kSecond;
  ASSERT_TRUE(shares.admit({"slow.test"}, now).admitted);
  auto both = shares.admit({"fast.test", "slow.test"}, now);
  EXPECT_FALSE(both.admitted);
  EXPECT_EQ(both.episodes_begun, std::vector<size_t>{1});
  EXPECT_EQ(shares.held_by("fast.test"), 0u);  // not counted: it was not admitted
  EXPECT_TRUE(shares.admit({"fast.test"}, now).admitted);
}

TEST(DestinationShares, ReleasesMakeRoomAndEndTheEpisode) {
  DestinationShares shares(4, kMaxWait);
  int64_t now = kSecond;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(shares.admit({"slow.test"}, now).admitted);
  ASSERT_FALSE(shares.admit({"slow.test"}, now).admitted);
  ASSERT_FALSE(shares.admit({"slow.test"}, now).admitted);

  now += kSecond;
  auto r1 = shares.release({"slow.test"}, now);
  EXPECT_FALSE(r1.room_for_put_back);
  EXPECT_TRUE(r1.episodes_ended.empty());
  EXPECT_TRUE(shares.admit({"slow.test"}, now).admitted);  // room again
  now += kSecond;
  shares.release({"slow.test"}, now);
  now += kSecond;
  auto half = shares.release({"slow.test"}, now);
  EXPECT_TRUE(half.room_for_put_back);  // half the share is free: scan for its mail
  now += kSecond;
  shares.release({"slow.test"}, now);
  now += kSecond;
  auto last = shares.release({"slow.test"}, now);
  ASSERT_EQ(last.episodes_ended.size(), 1u);
  EXPECT_EQ(last.episodes_ended[0].hop, "slow.test");
  EXPECT_EQ(last.episodes_ended[0].put_back, 2u);
  EXPECT_EQ(shares.held_by("slow.test"), 0u);
  EXPECT_EQ(shares.destinations_at_share(), 0u);
  EXPECT_TRUE(shares.release({"slow.test"}, now).episodes_ended.empty());  // nothing held: nothing to end
}

// A destination that takes one message every 100 ms: its put-back mail
// comes due at twice that pace (one per 50 ms), the first after half its
// share's worth of its time (10 × 100 ms / 2).
TEST(DestinationShares, PutBackMailComesDueAtTheDestinationsPace) {
  DestinationShares shares(10, kMaxWait);
  const int64_t gap = 100'000;
  int64_t now = kSecond;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(shares.admit({"slow.test"}, now).admitted);
  for (int i = 0; i < 40; ++i) {
    now += gap;
    shares.release({"slow.test"}, now);
    ASSERT_TRUE(shares.admit({"slow.test"}, now).admitted);
  }
  auto a = shares.admit({"slow.test"}, now);
  auto b = shares.admit({"slow.test"}, now);
  ASSERT_FALSE(a.admitted);
  ASSERT_FALSE(b.admitted);
  EXPECT_NEAR(static_cast<double>(a.due_us - now), 10 * gap / 2, gap / 5);
  EXPECT_NEAR(static_cast<double>(b.due_us - a.due_us), gap / 2, gap / 10);
}

// One that takes nothing at all: the longer it sits on its mail, the
// further apart its put-back messages go, and none waits beyond the cap.
TEST(DestinationShares, ATarpitSpreadsItsMailFurtherAndNeverBeyondTheCap) {
  DestinationShares shares(2, 60 * kSecond);
  const int64_t start = kSecond;
  ASSERT_TRUE(shares.admit({"tarpit.test"}, start).admitted);
  ASSERT_TRUE(shares.admit({"tarpit.test"}, start).admitted);
  auto early1 = shares.admit({"tarpit.test"}, start + kSecond);
  auto early2 = shares.admit({"tarpit.test"}, start + kSecond);
  const int64_t later = start + 20 * kSecond;
  auto late1 = shares.admit({"tarpit.test"}, later);
  auto late2 = shares.admit({"tarpit.test"}, later);
  EXPECT_GT(late2.due_us - late1.due_us, early2.due_us - early1.due_us);
  for (int i = 0; i < 100; ++i) EXPECT_LE(shares.admit({"tarpit.test"}, later).due_us, later + 60 * kSecond);
}

}  // namespace
}  // namespace tern::delivery
