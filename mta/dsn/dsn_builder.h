// Delivery status notifications as messages: RFC 6522 multipart/report
// with a human-readable part, the RFC 3464 message/delivery-status part
// (RFC 6533 message/global-delivery-status when the original used
// SMTPUTF8) and the returned original (whole, headers only, or nothing).
// Pure: no I/O, no clock; the caller gives every time and name.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tern::dsn {

// RFC 3464 §2.3.3 actions Tern reports.
enum class Action : uint8_t { failed, delayed, delivered, relayed };
std::string_view action_name(Action a);

struct RecipientReport {
  std::string final_recipient;     // the address as it was in the envelope
  std::string original_recipient;  // RFC 3461 ORCPT as "addr-type;address" (decoded); empty when absent
  Action action = Action::failed;
  std::string status;               // RFC 3463 code, "5.1.1"
  std::string remote_mta;           // host name of the server that replied; empty when none did
  std::string diagnostic;           // that server's reply as received ("550 5.1.1 no such user"); empty when none
  std::string reason;               // our words when no server replied (DNS failure, expiry, administrator)
  int64_t last_attempt_us = 0;      // 0 when there was no attempt
  int64_t will_retry_until_us = 0;  // Action delayed only
};

// Who the report is for.
enum class Audience : uint8_t {
  sender,           // the original's sender
  postmaster_copy,  // a copy of a failure report, for the postmaster
  double_bounce,    // a failed message from <>, for the postmaster
};
std::string_view audience_name(Audience a);  // "sender", "postmaster_copy", "double_bounce"

// What of the original the report carries.
enum class Returned : uint8_t { full, headers, nothing };

struct Report {
  std::string reporting_mta;        // our host name (Reporting-MTA, From: MAILER-DAEMON@...)
  std::string to;                   // who receives the report
  std::string original_sender;      // the original's envelope sender; empty for <>
  std::string queue_id;             // the original's queue ID
  std::string envid;                // RFC 3461 ENVID (decoded); empty when absent
  std::string original_message_id;  // its Message-ID header (for In-Reply-To), may be empty
  int64_t arrival_us = 0;
  int64_t now_us = 0;                       // Date:
  std::string message_id;                   // the report's own, with angle brackets
  std::vector<RecipientReport> recipients;  // all of one kind: failures, delays or successes
  Returned returned = Returned::full;       // what the caller asks for (RET, configuration)
  size_t max_returned_size = 0;             // a larger original is returned as headers only; 0: no limit
  std::string_view content;                 // the original as stored: CRLF lines
  bool smtputf8 = false;                    // the original was an SMTPUTF8 transaction
  bool binary = false;                      // the original was BINARYMIME: never returned whole
  Audience audience = Audience::sender;     // said in Subject and text
};

struct BuiltReport {
  std::string content;                 // the complete message, CRLF lines
  bool eight_bit = false;              // carries 8-bit octets: send with BODY=8BITMIME
  bool smtputf8 = false;               // carries UTF-8 headers or addresses: send with SMTPUTF8
  Returned returned = Returned::full;  // what it carries in the end
};

BuiltReport build_report(const Report& report);

// The header section of a message (up to and including the empty line that
// ends it; the whole message when it has no body).
std::string_view header_section(std::string_view content);

}  // namespace tern::dsn
