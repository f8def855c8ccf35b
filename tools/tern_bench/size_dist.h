// Message sizes: a fixed size ("1024", "1k", "100k", "1m") or a weighted
// distribution ("1k:60,10k:30,100k:10": 60% 1 KiB, 30% 10 KiB, 10% 100 KiB).
// Pure: parsing and sampling only.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "queue/result.h"

namespace tern::bench {

// "1024", "1k" (1024), "100K", "1m" (1048576). Must be > 0 and <= 1 GiB.
Result<uint64_t> parse_size(std::string_view text);

class SizeDistribution {
 public:
  struct Entry {
    uint64_t size;
    uint64_t weight;
  };
  static Result<SizeDistribution> parse(std::string_view text);
  static SizeDistribution fixed(uint64_t size);

  // One size, drawn with the entries' weights from `rng`.
  uint64_t sample(std::mt19937_64& rng) const;
  const std::vector<Entry>& entries() const { return entries_; }
  uint64_t max_size() const;
  bool is_fixed() const { return entries_.size() == 1; }
  std::string text() const { return text_; }

 private:
  std::vector<Entry> entries_;
  std::vector<uint64_t> cumulative_;  // running sum of weights
  uint64_t total_weight_ = 0;
  std::string text_;
};

}  // namespace tern::bench
