#include "tools/loadkit/bench_header.h"

#include <charconv>
#include <ctime>

namespace tern::loadkit {

std::optional<int64_t> parse_sent_header(std::string_view line) {
  if (line.size() <= kSentHeader.size() || line[kSentHeader.size()] != ':') return std::nullopt;
  for (size_t i = 0; i < kSentHeader.size(); ++i)
    if ((line[i] | 0x20) != (kSentHeader[i] | 0x20)) return std::nullopt;
  std::string_view value = line.substr(kSentHeader.size() + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  int64_t micros = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), micros);
  if (ec != std::errc{} || end != value.data() + value.size() || micros < 0) return std::nullopt;
  return micros;
}

int64_t unix_micros() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000;
}

}  // namespace tern::loadkit
