#include "dns/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace tern::dns {

namespace {

constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

}  // namespace

IpAddress IpAddress::v4(const uint8_t (&b)[4]) {
  IpAddress a;
  a.family = Family::v4;
  std::copy(b, b + 4, a.bytes.begin());
  return a;
}

IpAddress IpAddress::v6(const uint8_t (&b)[16]) {
  if (std::equal(kMappedPrefix, kMappedPrefix + 12, b)) {
    const uint8_t v4bytes[4] = {b[12], b[13], b[14], b[15]};
    return v4(v4bytes);
  }
  IpAddress a;
  a.family = Family::v6;
  std::copy(b, b + 16, a.bytes.begin());
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton wants a C string and nothing else: no zone ids, no spaces.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string s(text);
  uint8_t buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) {
    const uint8_t v4bytes[4] = {buf[0], buf[1], buf[2], buf[3]};
    return v4(v4bytes);
  }
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) return v6(buf);
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == Family::v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

bool IpAddress::is_unspecified() const {
  const size_t n = family == Family::v4 ? 4 : 16;
  return std::all_of(bytes.begin(), bytes.begin() + static_cast<long>(n), [](uint8_t b) { return b == 0; });
}

AddressLiteral parse_address_literal(std::string_view domain) {
  if (domain.empty() || domain.front() != '[') return {};
  AddressLiteral lit;
  lit.kind = LiteralKind::malformed;
  if (domain.back() != ']') return lit;
  std::string_view inner = domain.substr(1, domain.size() - 2);
  constexpr std::string_view kV6Tag = "IPv6:";
  if (inner.size() > kV6Tag.size() && iequals(inner.substr(0, kV6Tag.size()), kV6Tag)) {
    inner.remove_prefix(kV6Tag.size());
    // RFC 5321: the tagged form is IPv6 syntax; a dotted quad alone is not.
    if (inner.find(':') == std::string_view::npos) return lit;
    const std::string s(inner);
    uint8_t buf[16];
    if (inet_pton(AF_INET6, s.c_str(), buf) != 1) return lit;
    lit.address = IpAddress::v6(buf);
    lit.kind = LiteralKind::address;
    return lit;
  }
  const std::string s(inner);
  uint8_t buf[4];
  if (inner.size() >= INET_ADDRSTRLEN || inet_pton(AF_INET, s.c_str(), buf) != 1) return lit;
  const uint8_t v4bytes[4] = {buf[0], buf[1], buf[2], buf[3]};
  lit.address = IpAddress::v4(v4bytes);
  lit.kind = LiteralKind::address;
  return lit;
}

}  // namespace tern::dns
