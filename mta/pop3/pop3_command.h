// POP3 command lines (RFC 1939, RFC 2449). Pure, fuzzed.
//
// A command is a keyword of 3 or 4 letters (case-insensitive) and arguments
// separated by single spaces (RFC 1939 §3), each at most 40 octets. Two
// exceptions: PASS takes the rest of the line as one argument (RFC 1939 §7:
// a password may contain spaces), and the initial response of AUTH may be as
// long as the line (RFC 5034 §4). The line length itself (255 octets with
// CRLF, RFC 2449 §4) is enforced by the session's read.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::pop3 {

enum class Verb { user, pass, stat, list, retr, dele, rset, top, uidl, noop, quit, capa, stls, auth, unknown };

inline constexpr size_t kMaxArgument = 40;  // RFC 1939 §3

struct Command {
  Verb verb = Verb::unknown;
  std::vector<std::string> args;
  // Non-empty when the keyword is known but its arguments are not as the
  // command requires (count, spacing, length): the text for "-ERR ...".
  std::string error;
};

// One line without its CRLF.
Command parse_command(std::string_view line);

// "USER", "PASS", ...; "unknown".
std::string_view verb_name(Verb verb);

// A message number (RFC 1939 §3): decimal digits only (no sign), 1..max.
std::optional<size_t> parse_message_number(std::string_view text, size_t max);

// TOP's line count: decimal digits only, >= 0; a number too large for
// size_t saturates (it means "the whole body" anyway).
std::optional<size_t> parse_line_count(std::string_view text);

}  // namespace tern::pop3
