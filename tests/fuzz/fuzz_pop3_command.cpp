// libFuzzer target for the POP3 command parser (mta/pop3/pop3_command.h).
// Besides crashes and sanitizer reports it aborts when an invariant breaks:
// a parsed command must put back together into the line it came from.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "mta/pop3/pop3_command.h"
#include "mta/text.h"

namespace {

using tern::pop3::Command;
using tern::pop3::Verb;

void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

bool all_digits(std::string_view s) {
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return !s.empty();
}

std::string_view strip_zeros(std::string_view s) {
  while (s.size() > 1 && s.front() == '0') s.remove_prefix(1);
  return s;
}

void fuzz_command(std::string_view line) {
  const Command cmd = tern::pop3::parse_command(line);
  if (cmd.verb == Verb::unknown) {
    check(cmd.args.empty() && cmd.error.empty(), "unknown command has no arguments or error");
    return;
  }
  const std::string_view keyword = line.substr(0, line.find(' '));
  check(keyword.size() == 3 || keyword.size() == 4, "keyword length");
  check(tern::ascii_iequals(keyword, tern::pop3::verb_name(cmd.verb)), "keyword matches verb");
  if (!cmd.error.empty()) {
    check(cmd.args.empty(), "no arguments with an error");
    return;
  }
  // Keyword, then the arguments joined by single spaces, is the line.
  std::string rebuilt(keyword);
  for (size_t i = 0; i < cmd.args.size(); ++i) {
    const std::string& arg = cmd.args[i];
    check(!arg.empty(), "empty argument");
    if (cmd.verb != Verb::pass) check(arg.find(' ') == std::string::npos, "space in argument");
    const bool unbounded = cmd.verb == Verb::pass || (cmd.verb == Verb::auth && i == 1);
    if (!unbounded) check(arg.size() <= tern::pop3::kMaxArgument, "argument length");
    rebuilt += ' ';
    rebuilt += arg;
  }
  check(rebuilt == line, "command rebuilds the line");
  switch (cmd.verb) {
    case Verb::stat:
    case Verb::rset:
    case Verb::noop:
    case Verb::quit:
    case Verb::capa:
    case Verb::stls:
      check(cmd.args.empty(), "no arguments");
      break;
    case Verb::user:
    case Verb::pass:
    case Verb::retr:
    case Verb::dele:
      check(cmd.args.size() == 1, "one argument");
      break;
    case Verb::top:
      check(cmd.args.size() == 2, "two arguments");
      break;
    default:
      check(cmd.args.size() <= 2, "at most two arguments");
      break;
  }
}

void fuzz_numbers(std::string_view text, size_t max) {
  if (const std::optional<size_t> n = tern::pop3::parse_message_number(text, max)) {
    check(*n >= 1 && *n <= max, "message number in range");
    check(all_digits(text), "message number digits only");
    check(std::to_string(*n) == strip_zeros(text), "message number value");
  }
  if (const std::optional<size_t> n = tern::pop3::parse_line_count(text)) {
    check(all_digits(text), "line count digits only");
    const std::string_view digits = strip_zeros(text);
    if (digits.size() < 20) check(std::to_string(*n) == digits, "line count value");
  } else {
    check(!all_digits(text), "digits are a line count");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t max = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz_command(input);
  fuzz_numbers(input, max);
  fuzz_numbers(input, SIZE_MAX);
  return 0;
}
