#include <gtest/gtest.h>

#include "tools/loadkit/bench_header.h"
#include "tools/loadkit/histogram.h"

namespace tern::loadkit {
namespace {

TEST(Histogram, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
}

TEST(Histogram, SmallValuesAreExact) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 100; ++v) h.record(v);
  EXPECT_EQ(h.percentile(50), 50u);
  EXPECT_EQ(h.percentile(90), 90u);
  EXPECT_EQ(h.percentile(99), 99u);
  EXPECT_EQ(h.percentile(99.9), 100u);
  EXPECT_EQ(h.percentile(100), 100u);
  EXPECT_EQ(h.percentile(0), 1u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 100u);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(Histogram, PercentilesOfAUniformRangeWithinBucketPrecision) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 1'000'000; ++v) h.record(v);
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    double expected = p / 100.0 * 1'000'000;
    double got = static_cast<double>(h.percentile(p));
    EXPECT_GE(got, expected) << p;  // reported as the top of the bucket
    EXPECT_LE(got, expected * (1 + 1.0 / 128)) << p;
  }
  EXPECT_EQ(h.percentile(100), 1'000'000u);
}

TEST(Histogram, SkewedDistributionFindsTheTail) {
  LatencyHistogram h;
  for (int i = 0; i < 990; ++i) h.record(1000);
  for (int i = 0; i < 10; ++i) h.record(500'000);
  EXPECT_LE(h.percentile(99), 1007u);
  EXPECT_GE(h.percentile(99), 1000u);
  EXPECT_GE(h.percentile(99.9), 500'000u);
  EXPECT_EQ(h.max(), 500'000u);
}

TEST(Histogram, BucketsCoverEveryValueMonotonically) {
  unsigned last = 0;
  for (uint64_t v : std::initializer_list<uint64_t>{0, 1, 255, 256, 257, 511, 512, uint64_t{1} << 40, UINT64_MAX}) {
    unsigned b = LatencyHistogram::bucket_of(v);
    EXPECT_GE(b, last);
    EXPECT_GE(LatencyHistogram::highest_in_bucket(b), v);
    last = b;
  }
  EXPECT_EQ(LatencyHistogram::highest_in_bucket(LatencyHistogram::bucket_of(UINT64_MAX)), UINT64_MAX);
}

TEST(Histogram, MergeEqualsRecordingEverything) {
  LatencyHistogram a, b, all;
  for (uint64_t v = 0; v < 5000; ++v) {
    (v % 2 ? a : b).record(v * 37);
    all.record(v * 37);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  for (double p : {1.0, 50.0, 99.0, 99.9}) EXPECT_EQ(a.percentile(p), all.percentile(p));
}

TEST(BenchHeader, ParsesTheSendTime) {
  EXPECT_EQ(parse_sent_header("X-Tern-Bench-Sent: 1795398000123456"), 1795398000123456);
  EXPECT_EQ(parse_sent_header("x-tern-bench-sent:42 "), 42);
  EXPECT_FALSE(parse_sent_header("X-Tern-Bench-Sent: 12x"));
  EXPECT_FALSE(parse_sent_header("X-Tern-Bench-Sent: -5"));
  EXPECT_FALSE(parse_sent_header("X-Tern-Bench-Sentinel: 5"));
  EXPECT_FALSE(parse_sent_header("Subject: 5"));
  EXPECT_GT(unix_micros(), 1'700'000'000'000'000);
}

}  // namespace
}  // namespace tern::loadkit
