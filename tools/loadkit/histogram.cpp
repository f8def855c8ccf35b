#include "tools/loadkit/histogram.h"

#include <bit>
#include <cmath>

namespace tern::loadkit {

unsigned LatencyHistogram::bucket_of(uint64_t value) {
  if (value < kSubBuckets) return static_cast<unsigned>(value);
  unsigned exponent = 63 - static_cast<unsigned>(std::countl_zero(value));  // >= kSubBucketBits
  unsigned shift = exponent - (kSubBucketBits - 1);
  uint64_t mantissa = value >> shift;  // in [kSubBuckets / 2, kSubBuckets)
  return static_cast<unsigned>(kSubBuckets + (exponent - kSubBucketBits) * (kSubBuckets / 2) +
                               (mantissa - kSubBuckets / 2));
}

uint64_t LatencyHistogram::highest_in_bucket(unsigned bucket) {
  if (bucket < kSubBuckets) return bucket;
  uint64_t k = bucket - kSubBuckets;
  unsigned exponent = static_cast<unsigned>(kSubBucketBits + k / (kSubBuckets / 2));
  uint64_t mantissa = kSubBuckets / 2 + k % (kSubBuckets / 2);
  unsigned shift = exponent - (kSubBucketBits - 1);
  return ((mantissa + 1) << shift) - 1;  // wraps to UINT64_MAX for the very last bucket
}

void LatencyHistogram::record(uint64_t value) {
  ++counts_[bucket_of(value)];
  ++count_;
  sum_ += value;
  if (value < min_) min_ = value;
  if (value > max_) max_ = value;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (unsigned i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  if (other.count_ && other.min_ < min_) min_ = other.min_;
  if (other.max_ > max_) max_ = other.max_;
}

uint64_t LatencyHistogram::percentile(double p) const {
  if (count_ == 0) return 0;
  if (p < 0) p = 0;
  if (p > 100) p = 100;
  // The rank of the value asked for: at least p% of the values lie at or below it.
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      uint64_t v = highest_in_bucket(i);
      return v > max_ ? max_ : (v < min_ ? min_ : v);
    }
  }
  return max_;
}

}  // namespace tern::loadkit
