// SMTP command lines (RFC 5321 §4.1.1), BDAT (RFC 3030) and EHLO/HELO arguments.
#include "mta/smtp/command.h"

#include <array>
#include <charconv>
#include <string>
#include <system_error>
#include <utility>

#include "mta/smtp/address.h"
#include "mta/smtp/domain_syntax.h"

namespace tern::smtp {
namespace {

struct VerbName {
  std::string_view upper;
  Verb verb;
};

constexpr std::array<VerbName, 19> verb_names{{
    {"EHLO", Verb::ehlo},         {"HELO", Verb::helo}, {"MAIL", Verb::mail}, {"RCPT", Verb::rcpt},
    {"DATA", Verb::data},         {"BDAT", Verb::bdat}, {"RSET", Verb::rset}, {"NOOP", Verb::noop},
    {"QUIT", Verb::quit},         {"HELP", Verb::help}, {"VRFY", Verb::vrfy}, {"EXPN", Verb::expn},
    {"STARTTLS", Verb::starttls}, {"AUTH", Verb::auth}, {"ETRN", Verb::etrn}, {"SAML", Verb::saml},
    {"SEND", Verb::send},         {"SOML", Verb::soml}, {"TURN", Verb::turn},
}};

char to_upper(char c) {
  return c >= 'a' && c <= 'z' ? char(c - 'a' + 'A') : c;
}

bool equals_upper(std::string_view text, std::string_view upper) {
  if (text.size() != upper.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (to_upper(text[i]) != upper[i]) return false;
  }
  return true;
}

Reply syntax_error(std::string text) {
  return Reply{501, "5.5.4", std::move(text)};
}

}  // namespace

Command parse_command(std::string_view line) {
  // The verb ends at the first space or at the end of the line; anything
  // else glued to it ("DATAX", "QUIT\t") makes it a different, unknown word.
  const size_t space = line.find(' ');
  const std::string_view word = line.substr(0, space);
  Command command;
  command.argument = space == std::string_view::npos ? line.substr(line.size()) : line.substr(space + 1);
  for (const VerbName& name : verb_names) {
    if (equals_upper(word, name.upper)) {
      command.verb = name.verb;
      break;
    }
  }
  return command;
}

std::variant<BdatArgument, Reply> parse_bdat_argument(std::string_view arg) {
  BdatArgument bdat;
  const char* const end = arg.data() + arg.size();
  // from_chars takes no sign or blanks for unsigned types: digits only.
  const auto [digits_end, error] = std::from_chars(arg.data(), end, bdat.size);
  if (error == std::errc::result_out_of_range) return syntax_error("Chunk size too large");
  if (error != std::errc()) return syntax_error("Syntax: BDAT <chunk-size> [LAST]");
  const std::string_view rest(digits_end, size_t(end - digits_end));
  if (equals_upper(rest, " LAST")) {
    bdat.last = true;
  } else if (!rest.empty()) {
    return syntax_error("Syntax: BDAT <chunk-size> [LAST]");
  }
  return bdat;
}

std::variant<std::string_view, Reply> parse_helo_argument(std::string_view arg) {
  const bool valid = !arg.empty() && arg.front() == '[' ? detail::valid_address_literal(arg)
                                                        : valid_utf8(arg) && detail::valid_domain(arg, true);
  if (!valid) return syntax_error("Syntax: EHLO <domain or address literal>");
  return arg;
}

}  // namespace tern::smtp
