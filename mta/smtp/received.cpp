#include "mta/smtp/received.h"

#include <ctime>
#include <limits>

namespace tern::smtp {

std::string protocol_name(bool esmtp, bool tls, bool authenticated, bool smtputf8) {
  std::string p = smtputf8 ? "UTF8SMTP" : (esmtp ? "ESMTP" : "SMTP");
  if (tls) p += 'S';
  if (authenticated) p += 'A';
  return p;
}

std::string rfc5322_date(int64_t time_us) {
  time_t secs = static_cast<time_t>(time_us / 1'000'000);
  // Every message gets one, and many arrive within the same second:
  // each thread formats a second once.
  thread_local time_t formatted_second = std::numeric_limits<time_t>::min();
  thread_local char formatted[64];
  if (secs != formatted_second) {
    struct tm tm {};
    gmtime_r(&secs, &tm);
    strftime(formatted, sizeof formatted, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    formatted_second = secs;
  }
  return formatted;
}

std::string received_header(const TraceInfo& t) {
  std::string h = "Received: from ";
  h += t.helo.empty() ? std::string_view("unknown") : t.helo;
  h += " (";
  bool v6 = t.client_ip.find(':') != std::string_view::npos;
  h += v6 ? "[IPv6:" : "[";
  h += t.client_ip;
  h += "])\r\n\tby ";
  h += t.hostname;
  h += " (Tern) with ";
  h += t.protocol;
  if (!t.tls_version.empty()) {
    h += " (";
    h += t.tls_version;
    h += ':';
    h += t.tls_cipher;
    h += ')';
  }
  h += "\r\n\tid ";
  h += t.queue_id;
  if (!t.for_recipient.empty()) {
    h += "\r\n\tfor <";
    h += t.for_recipient;
    h += '>';
  }
  h += "; ";
  h += rfc5322_date(t.time_us);
  h += "\r\n";
  return h;
}

}  // namespace tern::smtp
