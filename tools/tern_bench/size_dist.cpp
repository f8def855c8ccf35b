#include "tools/tern_bench/size_dist.h"

#include <algorithm>
#include <charconv>

namespace tern::bench {

Result<uint64_t> parse_size(std::string_view text) {
  std::string_view digits = text;
  uint64_t mult = 1;
  if (!digits.empty()) {
    char last = digits.back();
    if (last == 'k' || last == 'K') mult = 1024;
    else if (last == 'm' || last == 'M') mult = 1024 * 1024;
    if (mult != 1) digits.remove_suffix(1);
  }
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size())
    return Error{"bad size \"" + std::string(text) + "\" (want e.g. 1024, 1k, 100k, 1m)"};
  constexpr uint64_t kMax = uint64_t{1} << 30;
  if (n == 0 || n > kMax / mult) return Error{"size \"" + std::string(text) + "\" out of range (1 byte .. 1 GiB)"};
  return n * mult;
}

SizeDistribution SizeDistribution::fixed(uint64_t size) {
  SizeDistribution d;
  d.entries_.push_back({size, 1});
  d.cumulative_.push_back(1);
  d.total_weight_ = 1;
  d.text_ = std::to_string(size);
  return d;
}

Result<SizeDistribution> SizeDistribution::parse(std::string_view text) {
  if (text.empty()) return Error{"empty size"};
  if (text.find(':') == std::string_view::npos && text.find(',') == std::string_view::npos) {
    auto s = parse_size(text);
    if (!s) return Error{s.error()};
    auto d = fixed(s.value());
    d.text_ = std::string(text);
    return d;
  }
  SizeDistribution d;
  std::string_view rest = text;
  for (;;) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    size_t colon = item.find(':');
    if (colon == std::string_view::npos)
      return Error{"bad size distribution entry \"" + std::string(item) + "\" (want SIZE:WEIGHT)"};
    auto s = parse_size(item.substr(0, colon));
    if (!s) return Error{s.error()};
    std::string_view wtext = item.substr(colon + 1);
    uint64_t w = 0;
    auto [end, ec] = std::from_chars(wtext.data(), wtext.data() + wtext.size(), w);
    if (wtext.empty() || ec != std::errc{} || end != wtext.data() + wtext.size() || w == 0 || w > 1'000'000)
      return Error{"bad weight \"" + std::string(wtext) + "\" in size distribution (want 1..1000000)"};
    d.entries_.push_back({s.value(), w});
    d.total_weight_ += w;
    d.cumulative_.push_back(d.total_weight_);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  d.text_ = std::string(text);
  return d;
}

uint64_t SizeDistribution::sample(std::mt19937_64& rng) const {
  if (entries_.size() == 1) return entries_[0].size;
  uint64_t r = std::uniform_int_distribution<uint64_t>(0, total_weight_ - 1)(rng);
  auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), r);
  return entries_[static_cast<size_t>(it - cumulative_.begin())].size;
}

uint64_t SizeDistribution::max_size() const {
  uint64_t m = 0;
  for (const auto& e : entries_) m = std::max(m, e.size);
  return m;
}

}  // namespace tern::bench
