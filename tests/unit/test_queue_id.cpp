#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string_view>
#include <thread>
#include <vector>

#include "queue/queue_id.h"

namespace tern::queue {
namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

int64_t wall_clock_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST(QueueIdTest, FormatIsSixteenCharactersOfTheAlphabet) {
  for (int i = 0; i < 1000; ++i) {
    std::string id = new_queue_id();
    ASSERT_EQ(id.size(), 16u) << id;
    for (char c : id) EXPECT_NE(kAlphabet.find(c), std::string_view::npos) << id;
    EXPECT_TRUE(is_queue_id(id)) << id;
  }
}

TEST(QueueIdTest, AlphabetIsInAsciiOrderAndAvoidsConfusableLetters) {
  EXPECT_TRUE(std::is_sorted(kAlphabet.begin(), kAlphabet.end()));
  for (char confusable : {'I', 'L', 'O', 'U'}) {
    EXPECT_FALSE(is_queue_id(std::string(15, '0') + confusable)) << confusable;
  }
}

TEST(QueueIdTest, RejectsMalformedIds) {
  std::string good = new_queue_id();
  EXPECT_FALSE(is_queue_id(""));
  EXPECT_FALSE(is_queue_id(good.substr(0, 15)));
  EXPECT_FALSE(is_queue_id(good + "0"));
  std::string lower = good;
  lower[3] = 'a';
  EXPECT_FALSE(is_queue_id(lower));
  std::string with_nul = good;
  with_nul[5] = '\0';
  EXPECT_FALSE(is_queue_id(with_nul));
  EXPECT_EQ(queue_id_time_us("not an id"), 0);
  EXPECT_EQ(queue_id_time_us(lower), 0);
  EXPECT_TRUE(is_queue_id("0000000000000000"));
  EXPECT_TRUE(is_queue_id("ZZZZZZZZZZZZZZZZ"));
}

TEST(QueueIdTest, EncodesTheCreationTime) {
  int64_t before = wall_clock_us();
  std::string id = new_queue_id();
  int64_t after = wall_clock_us();
  int64_t t = queue_id_time_us(id);
  // The generator may borrow a microsecond or two to stay strictly ordered.
  EXPECT_GE(t, before);
  EXPECT_LE(t, after + 1000);
}

TEST(QueueIdTest, KnownTimeDecodes) {
  // 11 time digits: "00000000010" is 32 microseconds; the sequence is ignored.
  EXPECT_EQ(queue_id_time_us("00000000010ZZZZZ"), 32);
  EXPECT_EQ(queue_id_time_us("0000000000Z00000"), 31);
  EXPECT_EQ(queue_id_time_us("ZZZZZZZZZZZ00000"), (int64_t{1} << 55) - 1);
}

TEST(QueueIdTest, LaterIdsSortAfterEarlierOnes) {
  std::string first = new_queue_id();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::string second = new_queue_id();
  EXPECT_LT(first, second);
  EXPECT_GE(queue_id_time_us(second) - queue_id_time_us(first), 2000);
  // Byte order and time order agree.
  std::vector<std::string> ids;
  for (int i = 0; i < 10'000; ++i) ids.push_back(new_queue_id());
  for (size_t i = 1; i < ids.size(); ++i) {
    ASSERT_LT(ids[i - 1], ids[i]);
    ASSERT_LE(queue_id_time_us(ids[i - 1]), queue_id_time_us(ids[i]));
  }
}

TEST(QueueIdTest, UniqueAndOrderedAcrossFourThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100'000;
  std::vector<std::vector<std::string>> per_thread(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&ids = per_thread[t]] {
      ids.reserve(kPerThread);
      for (int i = 0; i < kPerThread; ++i) ids.push_back(new_queue_id());
    });
  }
  for (auto& t : threads) t.join();

  std::vector<std::string> all;
  for (const auto& ids : per_thread) {
    for (size_t i = 1; i < ids.size(); ++i) ASSERT_LT(ids[i - 1], ids[i]);
    all.insert(all.end(), ids.begin(), ids.end());
  }
  ASSERT_EQ(all.size(), size_t{kThreads} * kPerThread);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
}

}  // namespace
}  // namespace tern::queue
