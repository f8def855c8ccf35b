// MAIL FROM / RCPT TO arguments: the path and the ESMTP parameters
// (RFC 5321 §4.1.2 Mail-parameters / Rcpt-parameters).
#include "mta/smtp/params.h"

#include <charconv>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace tern::smtp {
namespace {

// The values of tern::queue::NotifyFlags (queue/envelope.h), repeated here
// because the protocol layer does not depend on the queue.
enum NotifyBit : uint8_t {
  notify_never = 1,
  notify_success = 2,
  notify_failure = 4,
  notify_delay = 8,
};

constexpr size_t max_envid_chars = 100;  // RFC 3461 §4.4
constexpr size_t max_orcpt_chars = 500;  // RFC 3461 §4.2

constexpr std::string_view sender_syntax_code = "5.1.7";
constexpr std::string_view recipient_syntax_code = "5.1.3";

Reply syntax_error(std::string text) {
  return Reply{501, "5.5.4", std::move(text)};
}

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

std::string uppercase(std::string_view s) {
  std::string upper(s);
  for (char& c : upper) c = to_upper(c);
  return upper;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Removes a case-insensitive "FROM:" / "TO:" and the spaces some clients put
// after the colon. False when the prefix is missing.
bool remove_keyword_prefix(std::string_view& arg, std::string_view upper_prefix) {
  if (arg.size() < upper_prefix.size() || !equals_upper(arg.substr(0, upper_prefix.size()), upper_prefix)) return false;
  arg.remove_prefix(upper_prefix.size());
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  return true;
}

// The path ends at the first space outside a quoted local part. Whatever is
// glued to its ">" stays in the path, for parse_path to refuse.
size_t path_length(std::string_view arg) {
  bool quoted = false;
  for (size_t i = 0; i < arg.size(); ++i) {
    const char c = arg[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ' ') {
      return i;
    }
  }
  return arg.size();
}

struct Parameter {
  std::string_view keyword;
  std::string_view value;
  bool has_value = false;
};

// esmtp-param = esmtp-keyword ["=" esmtp-value]
// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
// esmtp-value = 1*(%d33-60 / %d62-126)
bool split_parameter(std::string_view token, Parameter& parameter) {
  const size_t equals = token.find('=');
  parameter.keyword = token.substr(0, equals);
  if (parameter.keyword.empty() || !is_alnum(parameter.keyword.front())) return false;
  for (const char c : parameter.keyword) {
    if (!is_alnum(c) && c != '-') return false;
  }
  parameter.has_value = equals != std::string_view::npos;
  if (!parameter.has_value) return true;
  parameter.value = token.substr(equals + 1);
  if (parameter.value.empty()) return false;
  for (const char c : parameter.value) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || c == '=') return false;
  }
  return true;
}

// Calls `handle(parameter)` for each space-separated parameter; stops at the
// first reply it returns.
template <typename Handler>
std::optional<Reply> for_each_parameter(std::string_view parameters, Handler&& handle) {
  while (true) {
    while (!parameters.empty() && parameters.front() == ' ') parameters.remove_prefix(1);
    if (parameters.empty()) return std::nullopt;
    const size_t token_end = parameters.find(' ');
    Parameter parameter;
    if (!split_parameter(parameters.substr(0, token_end), parameter)) return syntax_error("Syntax error in parameters");
    if (std::optional<Reply> reply = handle(parameter)) return reply;
    parameters.remove_prefix(token_end == std::string_view::npos ? parameters.size() : token_end);
  }
}

// Marks `bit` as seen in `seen`; false when it already was.
bool first_time(unsigned& seen, unsigned bit) {
  if (seen & bit) return false;
  seen |= bit;
  return true;
}

// xtext-decoded DSN values end up in DSN header fields: only printable ASCII.
bool printable_ascii(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 32 || u > 126) return false;
  }
  return true;
}

// RFC 822 atom: CHARs other than specials, SPACE and CTLs (the value
// characters are already %d33-126 without "=").
bool valid_addr_type(std::string_view s) {
  return !s.empty() && s.find_first_of("()<>@,;:\\\".[]") == std::string_view::npos;
}

// NOTIFY = "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )
std::optional<uint8_t> parse_notify(std::string_view value) {
  uint8_t flags = 0;
  while (true) {
    const size_t comma = value.find(',');
    const std::string_view item = value.substr(0, comma);
    uint8_t bit = 0;
    if (equals_upper(item, "NEVER")) {
      bit = notify_never;
    } else if (equals_upper(item, "SUCCESS")) {
      bit = notify_success;
    } else if (equals_upper(item, "FAILURE")) {
      bit = notify_failure;
    } else if (equals_upper(item, "DELAY")) {
      bit = notify_delay;
    } else {
      return std::nullopt;
    }
    if (flags & bit) return std::nullopt;
    flags |= bit;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  if ((flags & notify_never) && flags != notify_never) return std::nullopt;
  return flags;
}

std::optional<Reply> apply_mail_parameter(const Parameter& p, MailArgument& mail, unsigned& seen) {
  enum : unsigned { size_bit = 1, body_bit = 2, smtputf8_bit = 4, ret_bit = 8, envid_bit = 16 };
  if (equals_upper(p.keyword, "SIZE")) {
    if (!first_time(seen, size_bit)) return syntax_error("Duplicate SIZE parameter");
    const char* const end = p.value.data() + p.value.size();
    const auto [digits_end, error] = std::from_chars(p.value.data(), end, mail.size);
    if (!p.has_value || error != std::errc() || digits_end != end) return syntax_error("Bad SIZE value");
    mail.has_size = true;
  } else if (equals_upper(p.keyword, "BODY")) {
    if (!first_time(seen, body_bit)) return syntax_error("Duplicate BODY parameter");
    if (!equals_upper(p.value, "7BIT") && !equals_upper(p.value, "8BITMIME"))
      return syntax_error("BODY must be 7BIT or 8BITMIME");
    mail.body = uppercase(p.value);
  } else if (equals_upper(p.keyword, "SMTPUTF8")) {
    if (!first_time(seen, smtputf8_bit)) return syntax_error("Duplicate SMTPUTF8 parameter");
    if (p.has_value) return syntax_error("SMTPUTF8 takes no value");
    mail.smtputf8 = true;
  } else if (equals_upper(p.keyword, "RET")) {
    if (!first_time(seen, ret_bit)) return syntax_error("Duplicate RET parameter");
    if (!equals_upper(p.value, "FULL") && !equals_upper(p.value, "HDRS"))
      return syntax_error("RET must be FULL or HDRS");
    mail.ret = uppercase(p.value);
  } else if (equals_upper(p.keyword, "ENVID")) {
    if (!first_time(seen, envid_bit)) return syntax_error("Duplicate ENVID parameter");
    if (!p.has_value || p.value.size() > max_envid_chars) return syntax_error("Bad ENVID value");
    if (!xtext_decode(p.value, mail.envid) || !printable_ascii(mail.envid)) return syntax_error("Bad ENVID value");
  } else {
    return Reply{555, "5.5.4", "Unsupported MAIL parameter " + uppercase(p.keyword)};
  }
  return std::nullopt;
}

std::optional<Reply> apply_rcpt_parameter(const Parameter& p, RcptArgument& rcpt, unsigned& seen) {
  enum : unsigned { notify_bit = 1, orcpt_bit = 2 };
  if (equals_upper(p.keyword, "NOTIFY")) {
    if (!first_time(seen, notify_bit)) return syntax_error("Duplicate NOTIFY parameter");
    const std::optional<uint8_t> flags = parse_notify(p.value);
    if (!p.has_value || !flags) return syntax_error("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY");
    rcpt.notify = *flags;
  } else if (equals_upper(p.keyword, "ORCPT")) {
    if (!first_time(seen, orcpt_bit)) return syntax_error("Duplicate ORCPT parameter");
    const size_t semicolon = p.value.find(';');
    if (!p.has_value || p.value.size() > max_orcpt_chars || semicolon == std::string_view::npos)
      return syntax_error("Bad ORCPT value");
    const std::string_view addr_type = p.value.substr(0, semicolon);
    std::string address;
    if (!valid_addr_type(addr_type) || !xtext_decode(p.value.substr(semicolon + 1), address) || address.empty() ||
        !printable_ascii(address))
      return syntax_error("Bad ORCPT value");
    rcpt.orcpt.reserve(addr_type.size() + 1 + address.size());
    rcpt.orcpt.assign(addr_type).append(";").append(address);
  } else {
    return Reply{555, "5.5.4", "Unsupported RCPT parameter " + uppercase(p.keyword)};
  }
  return std::nullopt;
}

Reply needs_smtputf8() {
  return Reply{553, "5.6.7", "Non-ASCII address requires SMTPUTF8"};
}

}  // namespace

std::variant<MailArgument, Reply> parse_mail_argument(std::string_view arg) {
  if (!remove_keyword_prefix(arg, "FROM:")) return syntax_error("Syntax: MAIL FROM:<address> [parameters]");
  const size_t path_end = path_length(arg);
  std::variant<Address, Reply> sender = parse_path(arg.substr(0, path_end), true, sender_syntax_code);
  if (Reply* reply = std::get_if<Reply>(&sender)) return std::move(*reply);
  MailArgument mail;
  mail.sender = std::move(std::get<Address>(sender));
  unsigned seen = 0;
  if (std::optional<Reply> reply = for_each_parameter(
          arg.substr(path_end), [&](const Parameter& p) { return apply_mail_parameter(p, mail, seen); }))
    return std::move(*reply);
  if (mail.sender.utf8 && !mail.smtputf8) return needs_smtputf8();
  return mail;
}

std::string_view parameter_text(std::string_view arg) {
  const size_t colon = arg.find(':');
  if (colon == std::string_view::npos) return {};
  arg.remove_prefix(colon + 1);
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  arg.remove_prefix(path_length(arg));
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  while (!arg.empty() && arg.back() == ' ') arg.remove_suffix(1);
  return arg;
}

std::variant<RcptArgument, Reply> parse_rcpt_argument(std::string_view arg, bool smtputf8_transaction) {
  if (!remove_keyword_prefix(arg, "TO:")) return syntax_error("Syntax: RCPT TO:<address> [parameters]");
  const size_t path_end = path_length(arg);
  std::variant<Address, Reply> recipient = parse_path(arg.substr(0, path_end), false, recipient_syntax_code);
  if (Reply* reply = std::get_if<Reply>(&recipient)) return std::move(*reply);
  RcptArgument rcpt;
  rcpt.recipient = std::move(std::get<Address>(recipient));
  unsigned seen = 0;
  if (std::optional<Reply> reply = for_each_parameter(
          arg.substr(path_end), [&](const Parameter& p) { return apply_rcpt_parameter(p, rcpt, seen); }))
    return std::move(*reply);
  if (rcpt.recipient.utf8 && !smtputf8_transaction) return needs_smtputf8();
  return rcpt;
}

bool xtext_decode(std::string_view in, std::string& out) {
  auto hex_value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;  // RFC 3461 hexchar digits are upper case only
  };
  auto fail = [&out] {
    out.clear();
    return false;
  };
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == '+') {
      if (in.size() - i < 3) return fail();
      const int high = hex_value(in[i + 1]);
      const int low = hex_value(in[i + 2]);
      if (high < 0 || low < 0) return fail();
      out.push_back(char(high * 16 + low));
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return fail();
    } else {
      out.push_back(char(c));
    }
  }
  return true;
}

constexpr char kXtextHex[] = "0123456789ABCDEF";

std::string xtext_encode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto octet = static_cast<unsigned char>(c);
    if (octet >= '!' && octet <= '~' && octet != '+' && octet != '=') {
      out += c;
      continue;
    }
    out += '+';
    out += kXtextHex[octet >> 4];
    out += kXtextHex[octet & 0x0F];
  }
  return out;
}

}  // namespace tern::smtp
