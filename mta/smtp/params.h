// MAIL FROM / RCPT TO arguments: the path plus ESMTP parameters
// (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET ENVID
// NOTIFY ORCPT). Pure: no I/O, fuzzed.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "mta/smtp/address.h"
#include "mta/smtp/reply.h"

namespace tern::smtp {

struct MailArgument {
  Address sender;
  bool has_size = false;
  uint64_t size = 0;
  std::string body;  // "7BIT" or "8BITMIME" (uppercased), empty when absent
  bool smtputf8 = false;
  std::string ret;    // "FULL" or "HDRS", empty when absent
  std::string envid;  // xtext-decoded
};

struct RcptArgument {
  Address recipient;
  uint8_t notify = 0;  // tern::queue::NotifyFlags bits; 0 when absent
  std::string orcpt;   // "rfc822;decoded-address" (addr-type as given), empty when absent
};

// `arg` is the text after "MAIL" (starting "FROM:"), resp. after "RCPT"
// ("TO:"). "FROM:" / "TO:" are case-insensitive; a space after the colon is
// tolerated. Replies on error:
//  - missing FROM:/TO: or malformed parameter syntax: 501 5.5.4
//  - bad address: 501 5.1.7 (sender) / 501 5.1.3 (recipient)
//  - unknown parameter: 555 5.5.4
//  - duplicate parameter, bad value (SIZE not a number, BODY other than
//    7BIT/8BITMIME, RET other than FULL/HDRS, NOTIFY=NEVER with others,
//    repeated NOTIFY values, empty list items, ORCPT without ';', bad xtext,
//    ENVID over 100 / ORCPT over 500 characters (RFC 3461 §4.2, §4.4),
//    decoded values that are not printable ASCII): 501 5.5.4
//  - non-ASCII address when SMTPUTF8 is not given (MAIL), resp. when
//    `smtputf8_transaction` is false (RCPT): 553 5.6.7
std::variant<MailArgument, Reply> parse_mail_argument(std::string_view arg);
std::variant<RcptArgument, Reply> parse_rcpt_argument(std::string_view arg, bool smtputf8_transaction);

// The parameter text of a MAIL or RCPT argument as the client sent it: what
// follows the path ("FROM:" / "TO:", optional spaces, the path up to the
// first space outside a quoted local part), trimmed of surrounding spaces.
// For arguments that parsed; tern-sink records it.
std::string_view parameter_text(std::string_view arg);

// RFC 3461 §4 xtext decoding; nullopt-like failure returned as false.
bool xtext_decode(std::string_view in, std::string& out);
// RFC 3461 §4 xtext: "!" to "~" as they are except "+" and "=";
// every other octet as "+XX" (upper-case hex).
std::string xtext_encode(std::string_view text);

}  // namespace tern::smtp
