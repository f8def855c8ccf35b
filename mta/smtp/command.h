// SMTP command-line parsing (RFC 5321 §4.1). Pure: no I/O, fuzzed.
#pragma once
#include <cstdint>
#include <string_view>
#include <variant>

#include "mta/smtp/reply.h"

namespace tern::smtp {

enum class Verb {
  ehlo, helo, mail, rcpt, data, bdat, rset, noop, quit, help, vrfy,
  expn, starttls, auth, etrn, saml, send, soml, turn, unknown
};

struct Command {
  Verb verb = Verb::unknown;
  std::string_view argument;  // text after the verb and one space, trailing spaces kept
};

// `line` is one command line without its CRLF. Verbs are case-insensitive.
// MAIL and RCPT are recognised as "MAIL" / "RCPT" (the FROM:/TO: part is the
// argument). A verb that needs no argument followed by one is still returned;
// the session decides (501). Never fails: unknown verbs give Verb::unknown.
Command parse_command(std::string_view line);

// BDAT argument: "<chunk-size> [LAST]". Errors: 501 5.5.4.
struct BdatArgument {
  uint64_t size = 0;
  bool last = false;
};
std::variant<BdatArgument, Reply> parse_bdat_argument(std::string_view arg);

// EHLO/HELO argument: a domain or an address literal ([1.2.3.4],
// [IPv6:...]). Errors: 501 5.5.4. Returns the argument as given.
std::variant<std::string_view, Reply> parse_helo_argument(std::string_view arg);

}  // namespace tern::smtp
