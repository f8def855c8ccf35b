// The Received: trace header (RFC 5321 §4.4) that ternd prepends to every
// message it accepts. Pure.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace tern::smtp {

struct TraceInfo {
  std::string_view helo;          // as the client gave it
  std::string_view client_ip;     // "192.0.2.1" or "2001:db8::1"
  std::string_view hostname;      // ours
  std::string_view protocol;      // see protocol_name()
  std::string_view tls_version;   // empty without TLS
  std::string_view tls_cipher;
  std::string_view queue_id;
  std::string_view for_recipient; // only when the message has exactly one
  int64_t time_us = 0;
};

// "SMTP"/"ESMTP" + "S" with TLS + "A" when authenticated; RFC 6531 "UTF8"
// prefix for SMTPUTF8 transactions (UTF8SMTP, UTF8SMTPS, ...).
std::string protocol_name(bool esmtp, bool tls, bool authenticated, bool smtputf8);
// RFC 5322 date-time in UTC: "Sun, 22 Nov 2026 21:55:42 +0000".
std::string rfc5322_date(int64_t time_us);
// The complete header field, folded, ending in CRLF.
std::string received_header(const TraceInfo& t);

}  // namespace tern::smtp
