// SASL for SMTP AUTH (RFC 4954): base64 (RFC 4648) and the PLAIN message
// (RFC 4616); LOGIN is two base64 prompts. Pure: no I/O, fuzzed.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace tern::smtp {

// Strict RFC 4648 §4 base64: the standard alphabet, padding required (the
// length is a multiple of 4), no white space, at most two '=' and only at the
// end, and the unused bits of the last symbol zero (canonical encoding).
// "" decodes to "". nullopt for anything else.
std::optional<std::string> base64_decode(std::string_view text);

// Standard alphabet with padding.
std::string base64_encode(std::string_view data);

// RFC 4616: message = [authzid] NUL authcid NUL passwd.
struct SaslPlain {
  std::string authzid;  // empty: act as authcid
  std::string authcid;
  std::string password;
};

// The decoded PLAIN message: exactly two NULs; authcid and password
// non-empty; each of the three at most 255 octets and valid UTF-8.
std::optional<SaslPlain> parse_sasl_plain(std::string_view decoded);

}  // namespace tern::smtp
