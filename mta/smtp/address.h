// RFC 5321 §4.1.2 Path / Mailbox grammar, with RFC 6531 UTF-8 extensions.
// Pure: no I/O, fuzzed.
#pragma once
#include <string>
#include <string_view>
#include <variant>

#include "mta/smtp/reply.h"

namespace tern::smtp {

struct Address {
  std::string local_part;      // as written (quotes kept for quoted strings)
  std::string domain;          // domain or address literal with brackets; empty for <postmaster> and <>
  bool quoted_local = false;   // local part was a quoted string
  bool domain_literal = false; // [1.2.3.4] or [IPv6:...]
  bool source_route = false;   // a source route was present and stripped (RFC 5321 Appendix C)
  bool utf8 = false;           // contains non-ASCII (needs SMTPUTF8)
  // "local@domain", "postmaster", or "" for the null path
  std::string str() const { return domain.empty() ? local_part : local_part + "@" + domain; }
  bool null() const { return local_part.empty() && domain.empty(); }
};

// Parse "<path>" exactly (the angle brackets included; nothing before or
// after). `allow_null` accepts "<>" (reverse-path); "<postmaster>" (any case)
// is always accepted as a forward path. Non-ASCII is accepted only in UTF-8
// that is well formed (RFC 3629); the caller checks SMTPUTF8.
// Errors: 501 with enhanced code `bad_syntax_code` ("5.1.7" for senders,
// "5.1.3" for recipients).
std::variant<Address, Reply> parse_path(std::string_view text, bool allow_null,
                                        std::string_view bad_syntax_code);

// Well-formed UTF-8 (no overlongs, no surrogates, no code points > U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace tern::smtp
