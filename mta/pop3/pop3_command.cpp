#include "mta/pop3/pop3_command.h"

#include <cstdint>
#include <limits>

#include "mta/text.h"

namespace tern::pop3 {

namespace {

struct Spec {
  std::string_view keyword;
  Verb verb;
  size_t min_args;
  size_t max_args;
  std::string_view usage;
};

constexpr Spec kSpecs[] = {
    {"USER", Verb::user, 1, 1, "Syntax: USER name"},
    {"PASS", Verb::pass, 1, 1, "Syntax: PASS password"},
    {"STAT", Verb::stat, 0, 0, "Syntax: STAT"},
    {"LIST", Verb::list, 0, 1, "Syntax: LIST [msg]"},
    {"RETR", Verb::retr, 1, 1, "Syntax: RETR msg"},
    {"DELE", Verb::dele, 1, 1, "Syntax: DELE msg"},
    {"RSET", Verb::rset, 0, 0, "Syntax: RSET"},
    {"TOP", Verb::top, 2, 2, "Syntax: TOP msg n"},
    {"UIDL", Verb::uidl, 0, 1, "Syntax: UIDL [msg]"},
    {"NOOP", Verb::noop, 0, 0, "Syntax: NOOP"},
    {"QUIT", Verb::quit, 0, 0, "Syntax: QUIT"},
    {"CAPA", Verb::capa, 0, 0, "Syntax: CAPA"},
    {"STLS", Verb::stls, 0, 0, "Syntax: STLS"},
    {"AUTH", Verb::auth, 0, 2, "Syntax: AUTH mechanism [initial-response]"},
};

bool is_alpha(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

}  // namespace

std::string_view verb_name(Verb verb) {
  for (const Spec& s : kSpecs)
    if (s.verb == verb) return s.keyword;
  return "unknown";
}

Command parse_command(std::string_view line) {
  Command cmd;
  const size_t space = line.find(' ');
  const std::string_view keyword = line.substr(0, space);
  if (keyword.size() < 3 || keyword.size() > 4) return cmd;
  for (char c : keyword)
    if (!is_alpha(c)) return cmd;
  const Spec* spec = nullptr;
  for (const Spec& s : kSpecs) {
    if (ascii_iequals(s.keyword, keyword)) {
      spec = &s;
      break;
    }
  }
  if (!spec) return cmd;
  cmd.verb = spec->verb;
  const std::string_view rest = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  if (space != std::string_view::npos && rest.empty()) {
    cmd.error = spec->usage;  // a trailing space: an empty argument
    return cmd;
  }
  if (spec->verb == Verb::pass) {
    // The whole rest of the line, spaces included (RFC 1939 §7). Its length
    // is bounded by the line limit only: passphrases may exceed 40 octets.
    if (rest.empty()) {
      cmd.error = spec->usage;
      return cmd;
    }
    cmd.args.emplace_back(rest);
    return cmd;
  }
  if (!rest.empty()) {
    size_t pos = 0;
    for (;;) {
      const size_t next = rest.find(' ', pos);
      const std::string_view arg = rest.substr(pos, next == std::string_view::npos ? next : next - pos);
      // The second argument of AUTH (the initial response) may use the line.
      const bool unbounded = spec->verb == Verb::auth && cmd.args.size() == 1;
      if (arg.empty() || (arg.size() > kMaxArgument && !unbounded) || cmd.args.size() >= spec->max_args) {
        cmd.error = spec->usage;
        cmd.args.clear();
        return cmd;
      }
      cmd.args.emplace_back(arg);
      if (next == std::string_view::npos) break;
      pos = next + 1;
    }
  }
  if (cmd.args.size() < spec->min_args) {
    cmd.error = spec->usage;
    cmd.args.clear();
  }
  return cmd;
}

std::optional<size_t> parse_message_number(std::string_view text, size_t max) {
  if (text.empty()) return std::nullopt;
  size_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const size_t digit = static_cast<size_t>(c - '0');
    if (n > (std::numeric_limits<size_t>::max() - digit) / 10) return std::nullopt;
    n = n * 10 + digit;
  }
  if (n < 1 || n > max) return std::nullopt;
  return n;
}

std::optional<size_t> parse_line_count(std::string_view text) {
  if (text.empty()) return std::nullopt;
  size_t n = 0;
  bool saturated = false;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const size_t digit = static_cast<size_t>(c - '0');
    if (saturated) continue;
    if (n > (std::numeric_limits<size_t>::max() - digit) / 10) {
      saturated = true;
      n = std::numeric_limits<size_t>::max();
      continue;
    }
    n = n * 10 + digit;
  }
  return n;
}

}  // namespace tern::pop3
