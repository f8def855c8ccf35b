// A latency histogram in the manner of HdrHistogram: log-linear buckets, so
// any 64-bit value is kept with a relative error under 1/128 (0.8%) in a
// fixed 58 KiB, recording is O(1) and histograms of several threads merge.
#pragma once
#include <array>
#include <cstdint>

namespace tern::loadkit {

class LatencyHistogram {
 public:
  // Values below kSubBuckets are exact; above, each power of two is split
  // into kSubBuckets / 2 equal buckets.
  static constexpr unsigned kSubBucketBits = 8;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;

  void record(uint64_t value);
  void merge(const LatencyHistogram& other);
  void reset() { *this = LatencyHistogram{}; }

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0; }
  // The smallest recorded value v such that at least p percent of the
  // values are <= v (p in [0, 100]); reported as the highest value of its
  // bucket, clamped to max(), so p100 == max(). 0 when empty.
  uint64_t percentile(double p) const;

  // Bucket arithmetic, public for the tests.
  static unsigned bucket_of(uint64_t value);
  static uint64_t highest_in_bucket(unsigned bucket);

 private:
  static constexpr unsigned kBuckets = (64 - kSubBucketBits + 1) * (kSubBuckets / 2) + kSubBuckets / 2;
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  unsigned __int128 sum_ = 0;
};

}  // namespace tern::loadkit
