// IP addresses as the resolver hands them out, and SMTP address literals
// ("[192.0.2.1]", "[IPv6:2001:db8::1]", RFC 5321 §4.1.3), which name a host
// without DNS. Pure: no I/O.
#pragma once
#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::dns {

struct IpAddress {
  enum class Family : uint8_t { v4, v6 };
  Family family = Family::v4;
  std::array<uint8_t, 16> bytes{};  // network order; an IPv4 address uses the first 4

  static IpAddress v4(const uint8_t (&b)[4]);
  static IpAddress v6(const uint8_t (&b)[16]);
  // "192.0.2.1" or "2001:db8::1"; IPv4-mapped IPv6 ("::ffff:192.0.2.1")
  // becomes IPv4, so one host has one spelling.
  static std::optional<IpAddress> parse(std::string_view text);
  std::string to_string() const;
  bool is_unspecified() const;  // 0.0.0.0 or ::

  auto operator<=>(const IpAddress&) const = default;
};

// An SMTP address literal: the domain part of a mailbox in brackets.
enum class LiteralKind { not_literal, address, malformed };
struct AddressLiteral {
  LiteralKind kind = LiteralKind::not_literal;
  IpAddress address;  // when kind == address
};
// "[1.2.3.4]" and "[IPv6:...]" (the tag is case-insensitive) are addresses;
// anything else in brackets ("[foo]", "[IPv6:1.2.3.4]") is malformed; a
// domain without brackets is not a literal.
AddressLiteral parse_address_literal(std::string_view domain);

}  // namespace tern::dns
