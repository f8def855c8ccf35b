#include <gtest/gtest.h>

#include "tools/tern_bench/size_dist.h"

namespace tern::bench {
namespace {

TEST(BenchSize, ParsesSuffixes) {
  EXPECT_EQ(parse_size("1024").value(), 1024u);
  EXPECT_EQ(parse_size("1k").value(), 1024u);
  EXPECT_EQ(parse_size("100K").value(), 102400u);
  EXPECT_EQ(parse_size("1m").value(), 1048576u);
  EXPECT_EQ(parse_size("1M").value(), 1048576u);
  for (const char* bad : {"", "k", "0", "-1", "1g", "1.5k", "2048m", "1kk", " 1k", "abc"}) EXPECT_FALSE(parse_size(bad)) << bad;
}

TEST(BenchSize, FixedSize) {
  auto d = SizeDistribution::parse("10k");
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->is_fixed());
  std::mt19937_64 rng(1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(d->sample(rng), 10240u);
}

TEST(BenchSize, DistributionParseErrors) {
  for (const char* bad : {"1k:60,", "1k:60,10k", "1k:x", "1k:0", ":5", "1k:60,,10k:30", "1q:5", "1k:5:5", "1k:-1"})
    EXPECT_FALSE(SizeDistribution::parse(bad)) << bad;
}

TEST(BenchSize, SamplingFollowsTheWeights) {
  auto d = SizeDistribution::parse("1k:60,10k:30,100k:10");
  ASSERT_TRUE(d);
  ASSERT_EQ(d->entries().size(), 3u);
  EXPECT_EQ(d->max_size(), 102400u);
  std::mt19937_64 rng(12345);
  constexpr int kDraws = 100'000;
  int n1 = 0, n10 = 0, n100 = 0;
  for (int i = 0; i < kDraws; ++i) {
    uint64_t s = d->sample(rng);
    if (s == 1024) ++n1;
    else if (s == 10240) ++n10;
    else if (s == 102400) ++n100;
    else ADD_FAILURE() << "unexpected size " << s;
  }
  // Binomial standard deviation at 100k draws is < 0.16%; allow 1%.
  EXPECT_NEAR(n1 / double(kDraws), 0.60, 0.01);
  EXPECT_NEAR(n10 / double(kDraws), 0.30, 0.01);
  EXPECT_NEAR(n100 / double(kDraws), 0.10, 0.01);
}

TEST(BenchSize, SameSeedSameDraws) {
  auto d = SizeDistribution::parse("1k:1,2k:1,3k:1");
  ASSERT_TRUE(d);
  std::mt19937_64 a(7), b(7);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(d->sample(a), d->sample(b));
}

}  // namespace
}  // namespace tern::bench
