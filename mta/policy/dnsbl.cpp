#include "mta/policy/dnsbl.h"

#include <algorithm>
#include <utility>

#include "mta/text.h"

namespace tern::policy {

namespace {

std::string_view without_trailing_dot(std::string_view zone) {
  if (!zone.empty() && zone.back() == '.') zone.remove_suffix(1);
  return zone;
}

bool is_v4_mapped(const dns::IpAddress& ip) {
  if (ip.family != dns::IpAddress::Family::v6) return false;
  for (size_t i = 0; i < 10; ++i)
    if (ip.bytes[i] != 0) return false;
  return ip.bytes[10] == 0xff && ip.bytes[11] == 0xff;
}

}  // namespace

std::string dnsbl_query_name(const dns::IpAddress& ip, std::string_view zone) {
  zone = without_trailing_dot(zone);
  std::string name;
  if (ip.family == dns::IpAddress::Family::v4 || is_v4_mapped(ip)) {
    const size_t first = ip.family == dns::IpAddress::Family::v4 ? 0 : 12;
    for (size_t i = first + 4; i-- > first;) {
      name += std::to_string(ip.bytes[i]);
      name += '.';
    }
  } else {
    static constexpr char kHex[] = "0123456789abcdef";
    name.reserve(64 + zone.size());
    for (size_t i = 16; i-- > 0;) {
      name += kHex[ip.bytes[i] & 0x0f];
      name += '.';
      name += kHex[ip.bytes[i] >> 4];
      name += '.';
    }
  }
  name += zone;
  return name;
}

bool is_listing_answer(const dns::IpAddress& answer) {
  if (answer.family != dns::IpAddress::Family::v4 || answer.bytes[0] != 127) return false;
  return !(answer.bytes[1] == 255 && answer.bytes[2] == 255);
}

std::string sanitize_reason(std::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxReasonLength));
  for (char c : text) {
    if (out.size() == kMaxReasonLength) break;
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  return out;
}

io::Task<std::optional<DnsblHit>> check_dnsbl(dns::Resolver& resolver, const dns::IpAddress& client,
                                              const std::vector<std::string>& zones) {
  std::vector<std::string> used_zones;
  std::vector<std::string> names;
  for (const std::string& z : zones) {
    const std::string_view zone = without_trailing_dot(z);
    if (zone.empty()) continue;
    used_zones.emplace_back(zone);
    names.push_back(dnsbl_query_name(client, zone));
  }
  if (names.empty()) co_return std::nullopt;

  auto a_lookups = resolver.lookup_a_many(names);
  std::vector<dns::AddrResult> answers = co_await a_lookups;
  size_t listed = answers.size();
  for (size_t i = 0; i < answers.size() && listed == answers.size(); ++i) {
    if (!answers[i].ok()) continue;  // NXDOMAIN: not listed; temporary: fail open
    for (const dns::IpAddress& a : *answers[i]) {
      if (is_listing_answer(a)) {
        listed = i;
        break;
      }
    }
  }
  if (listed == answers.size()) co_return std::nullopt;

  DnsblHit hit;
  hit.zone = used_zones[listed];
  auto txt_lookup = resolver.lookup_txt(names[listed]);
  dns::TextResult texts = co_await txt_lookup;
  std::string joined;
  if (texts.ok()) {
    for (const std::string& t : *texts) {
      if (t.empty()) continue;
      if (!joined.empty()) joined += "; ";
      joined += t;
    }
  }
  hit.reason = joined.empty() ? concat({"listed in ", hit.zone}) : sanitize_reason(joined);
  co_return hit;
}

}  // namespace tern::policy
