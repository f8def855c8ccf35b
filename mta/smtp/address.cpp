// RFC 5321 §4.1.2 Path grammar with the RFC 6531 UTF-8 extensions.
#include "mta/smtp/address.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "mta/smtp/domain_syntax.h"

namespace tern::smtp {
namespace {

// RFC 5321 §4.5.3.1.
constexpr size_t max_local_part_octets = 64;
constexpr size_t max_domain_octets = 255;
constexpr size_t max_path_octets = 256;  // including the angle brackets

bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_non_ascii(unsigned char c) {
  return c >= 0x80;
}

// RFC 5322 atext; non-ASCII octets are RFC 6531 UTF8-non-ascii once the
// whole path has been checked to be well-formed UTF-8.
bool is_atext(unsigned char c) {
  constexpr std::string_view atext_specials = "!#$%&'*+-/=?^_`{|}~";
  return is_alpha(c) || is_digit(c) || is_non_ascii(c) || atext_specials.find(char(c)) != std::string_view::npos;
}

// qtextSMTP: %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii.
bool is_qtext(unsigned char c) {
  return (c >= 32 && c <= 126 && c != '"' && c != '\\') || is_non_ascii(c);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629 §4 table), or 0.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  size_t length = 0;
  unsigned char second_min = 0x80, second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead == 0xE0) {
    length = 3, second_min = 0xA0;  // no overlongs
  } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
    length = 3;
  } else if (lead == 0xED) {
    length = 3, second_max = 0x9F;  // no surrogates
  } else if (lead == 0xF0) {
    length = 4, second_min = 0x90;  // no overlongs
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    length = 4;
  } else if (lead == 0xF4) {
    length = 4, second_max = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() - i < length) return 0;
  const auto second = static_cast<unsigned char>(s[i + 1]);
  if (second < second_min || second > second_max) return 0;
  for (size_t k = 2; k < length; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  }
  return length;
}

bool has_non_ascii(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return is_non_ascii(static_cast<unsigned char>(c)); });
}

// Snum "." Snum "." Snum "." Snum, each 1*3DIGIT with a value up to 255.
bool valid_ipv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (true) {
    unsigned value = 0;
    size_t digits = 0;
    while (i < s.size() && is_digit(static_cast<unsigned char>(s[i])) && digits < 4) {
      value = value * 10 + unsigned(s[i] - '0');
      ++i, ++digits;
    }
    if (digits == 0 || digits > 3 || value > 255) return false;
    if (++parts == 4) return i == s.size();
    if (i == s.size() || s[i] != '.') return false;
    ++i;
  }
}

// IPv6-hex *(":" IPv6-hex), optionally ending in ":" IPv4 when
// `allow_ipv4_tail`. Counts the hex groups and reports whether a tail was
// present. An empty string is zero groups.
bool ipv6_groups(std::string_view s, bool allow_ipv4_tail, int& hex_groups, bool& ipv4_tail) {
  hex_groups = 0;
  ipv4_tail = false;
  if (s.empty()) return true;
  while (true) {
    const size_t colon = s.find(':');
    const std::string_view group = s.substr(0, colon);
    if (colon == std::string_view::npos && allow_ipv4_tail && group.find('.') != std::string_view::npos) {
      ipv4_tail = true;
      return valid_ipv4(group);
    }
    if (group.empty() || group.size() > 4) return false;
    if (!std::all_of(group.begin(), group.end(), [](char c) { return is_hex(static_cast<unsigned char>(c)); }))
      return false;
    ++hex_groups;
    if (colon == std::string_view::npos) return true;
    s.remove_prefix(colon + 1);
  }
}

// RFC 5321 §4.1.3 IPv6-addr: IPv6-full / IPv6-comp / IPv6v4-full / IPv6v4-comp.
// Unlike RFC 4291, "::" stands for at least two groups, so at most six
// (four with an IPv4 tail) groups may accompany it.
bool valid_ipv6(std::string_view s) {
  int groups = 0;
  bool ipv4_tail = false;
  const size_t compression = s.find("::");
  if (compression == std::string_view::npos) {
    if (!ipv6_groups(s, true, groups, ipv4_tail)) return false;
    return groups == (ipv4_tail ? 6 : 8);
  }
  const std::string_view before = s.substr(0, compression);
  const std::string_view after = s.substr(compression + 2);
  if (after.find("::") != std::string_view::npos || (!after.empty() && after.front() == ':')) return false;
  int groups_before = 0;
  bool unused_tail = false;
  if (!ipv6_groups(before, false, groups_before, unused_tail)) return false;
  if (!ipv6_groups(after, true, groups, ipv4_tail)) return false;
  return groups_before + groups <= (ipv4_tail ? 4 : 6);
}

// Dot-string = Atom *("." Atom): non-empty atoms separated by single dots.
bool valid_dot_string(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '.') {
      if (s[i - 1] == '.') return false;
    } else if (!is_atext(c)) {
      return false;
    }
  }
  return true;
}

// Length of the Quoted-string at the start of `s` (which begins with a
// DQUOTE), or 0 when it is malformed or does not end.
size_t quoted_string_length(std::string_view s) {
  for (size_t i = 1; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {
      // quoted-pairSMTP: backslash followed by %d32-126
      if (i + 1 == s.size()) return 0;
      const auto quoted = static_cast<unsigned char>(s[i + 1]);
      if (quoted < 32 || quoted > 126) return 0;
      ++i;
    } else if (!is_qtext(c)) {
      return 0;
    }
  }
  return 0;
}

class PathParser {
 public:
  explicit PathParser(std::string_view bad_syntax_code) : code_(bad_syntax_code) {}

  std::variant<Address, Reply> parse(std::string_view text, bool allow_null) {
    if (text.size() > max_path_octets) return error("Path too long");
    if (text.size() < 2 || text.front() != '<' || text.back() != '>')
      return error("Syntax error in address: it must be enclosed in <>");
    std::string_view inner = text.substr(1, text.size() - 2);
    if (!valid_utf8(inner)) return error("Invalid UTF-8 in address");
    Address address;
    address.utf8 = has_non_ascii(inner);
    if (inner.empty()) {
      if (!allow_null) return error("Null address not allowed here");
      return address;
    }
    if (iequals(inner, "postmaster")) {
      address.local_part = inner;
      return address;
    }
    if (inner.front() == '@') {
      const size_t route_end = source_route_length(inner);
      if (route_end == 0) return error("Syntax error in source route");
      address.source_route = true;
      inner.remove_prefix(route_end);
    }
    return parse_mailbox(inner, std::move(address));
  }

 private:
  Reply error(std::string text) const { return Reply{501, code_, std::move(text)}; }

  // A-d-l ":" where A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain.
  // Returns the length including the ":", or 0 when malformed.
  static size_t source_route_length(std::string_view s) {
    size_t i = 0;
    while (true) {
      if (i == s.size() || s[i] != '@') return 0;
      const size_t domain_end = s.find_first_of(",:", i + 1);
      if (domain_end == std::string_view::npos) return 0;
      if (!detail::valid_domain(s.substr(i + 1, domain_end - i - 1), false)) return 0;
      if (s[domain_end] == ':') return domain_end + 1;
      i = domain_end + 1;
    }
  }

  // Mailbox = Local-part "@" ( Domain / address-literal )
  std::variant<Address, Reply> parse_mailbox(std::string_view s, Address address) const {
    size_t local_end;
    if (!s.empty() && s.front() == '"') {
      local_end = quoted_string_length(s);
      if (local_end == 0) return error("Syntax error in quoted local part");
      // An empty Quoted-string is grammatical but names nobody.
      if (local_end == 2) return error("Empty local part");
      address.quoted_local = true;
    } else {
      local_end = s.find('@');
      if (local_end == std::string_view::npos) return error("Syntax error in address: missing @domain");
      if (local_end == 0) return error("Empty local part");
      if (!valid_dot_string(s.substr(0, local_end))) return error("Syntax error in local part");
    }
    if (local_end > max_local_part_octets) return error("Local part too long");
    if (local_end == s.size() || s[local_end] != '@') return error("Syntax error in address: missing @domain");
    const std::string_view domain = s.substr(local_end + 1);
    if (domain.size() > max_domain_octets) return error("Domain too long");
    if (!domain.empty() && domain.front() == '[') {
      if (!detail::valid_address_literal(domain)) return error("Syntax error in address literal");
      address.domain_literal = true;
    } else if (!detail::valid_domain(domain, false)) {
      return error("Syntax error in domain");
    }
    address.local_part = s.substr(0, local_end);
    address.domain = domain;
    return address;
  }

  std::string_view code_;
};

}  // namespace

namespace detail {

bool valid_domain(std::string_view domain, bool allow_trailing_dot) {
  if (allow_trailing_dot && !domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (domain.empty() || domain.size() > max_domain_octets) return false;
  size_t label_start = 0;
  while (true) {
    size_t label_end = domain.find('.', label_start);
    if (label_end == std::string_view::npos) label_end = domain.size();
    const std::string_view label = domain.substr(label_start, label_end - label_start);
    if (label.empty() || label.front() == '-' || label.back() == '-') return false;
    for (const char ch : label) {
      const auto c = static_cast<unsigned char>(ch);
      if (!is_alpha(c) && !is_digit(c) && c != '-' && !is_non_ascii(c)) return false;
    }
    if (label_end == domain.size()) return true;
    label_start = label_end + 1;
  }
}

bool valid_address_literal(std::string_view literal) {
  if (literal.size() < 2 || literal.front() != '[' || literal.back() != ']') return false;
  const std::string_view inner = literal.substr(1, literal.size() - 2);
  constexpr std::string_view ipv6_tag = "IPv6:";
  if (inner.size() >= ipv6_tag.size() && iequals(inner.substr(0, ipv6_tag.size()), ipv6_tag))
    return valid_ipv6(inner.substr(ipv6_tag.size()));
  return valid_ipv4(inner);
}

}  // namespace detail

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (!is_non_ascii(static_cast<unsigned char>(s[i]))) {
      ++i;
      continue;
    }
    const size_t length = utf8_sequence_length(s, i);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

std::variant<Address, Reply> parse_path(std::string_view text, bool allow_null, std::string_view bad_syntax_code) {
  return PathParser(bad_syntax_code).parse(text, allow_null);
}

}  // namespace tern::smtp
