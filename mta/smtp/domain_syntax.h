// Domain and address-literal syntax (RFC 5321 §4.1.2, §4.1.3, RFC 6531),
// shared by the path parser and the EHLO/HELO argument check. Internal to
// mta/smtp: defined in address.cpp.
#pragma once
#include <string_view>

namespace tern::smtp::detail {

// sub-domain *("." sub-domain), at most 255 octets; labels are letters,
// digits, inner hyphens and (RFC 6531 U-labels) non-ASCII octets, which the
// caller must have checked to be well-formed UTF-8. `allow_trailing_dot`
// accepts one final "." (the absolute form some clients send in EHLO).
bool valid_domain(std::string_view domain, bool allow_trailing_dot);

// "[" IPv4-address-literal / "IPv6:" IPv6-addr "]". General-address-literal
// (any other tag) is refused: nothing could deliver to it.
bool valid_address_literal(std::string_view literal);

}  // namespace tern::smtp::detail
