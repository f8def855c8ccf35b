#include "mta/dsn/dsn_builder.h"

#include "mta/smtp/address.h"
#include "mta/smtp/params.h"
#include "mta/smtp/received.h"
#include "mta/text.h"

namespace tern::dsn {

namespace {

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

bool has_controls(std::string_view s) {
  for (char c : s) {
    const auto o = static_cast<unsigned char>(c);
    if (o < 0x20 || o == 0x7f) return true;
  }
  return false;
}

// A value for a header or status field: never a line break or another
// control character (the values come from the network; a CR or LF would
// let a peer add fields of its own), and ASCII only unless the report may
// carry UTF-8 (RFC 6533). What cannot stay is written as xtext, the
// encoding RFC 3461 gives these values on the wire.
std::string field_value(std::string_view value, bool utf8_allowed) {
  if (!has_controls(value) && (is_ascii(value) || (utf8_allowed && smtp::valid_utf8(value)))) return std::string(value);
  return smtp::xtext_encode(value);
}

// Text for the human-readable part: control characters become spaces, and
// octets of text that is not UTF-8 (the part says charset=utf-8) '?'.
std::string plain(std::string_view value) {
  std::string out(value);
  const bool utf8 = smtp::valid_utf8(value);
  for (char& c : out) {
    const auto o = static_cast<unsigned char>(c);
    if (o < 0x20 || o == 0x7f) c = ' ';
    if (o >= 0x80 && !utf8) c = '?';
  }
  return out;
}

// One paragraph of the human-readable part as lines of at most 76
// characters where its words allow (a continuation indented), never more
// than 998 octets; each line ends with CRLF.
std::string wrapped(std::string_view paragraph) {
  constexpr size_t kWidth = 76;
  constexpr size_t kHardLimit = 990;
  std::string out;
  size_t line_length = 0;
  while (!paragraph.empty()) {
    const size_t space = paragraph.find(' ');
    std::string_view word = paragraph.substr(0, space);
    paragraph.remove_prefix(space == std::string_view::npos ? paragraph.size() : space + 1);
    if (line_length > 0 && line_length + 1 + word.size() > kWidth) {
      out += "\r\n    ";
      line_length = 4;
    } else if (line_length > 0) {
      out += ' ';
      ++line_length;
    }
    while (line_length + word.size() > kHardLimit) {
      const size_t take = kHardLimit - line_length;
      out += word.substr(0, take);
      out += "\r\n    ";
      word.remove_prefix(take);
      line_length = 4;
    }
    out += word;
    line_length += word.size();
  }
  out += "\r\n";
  return out;
}

// "Name: value" folded at spaces so that lines stay within 78 characters
// where the value allows (RFC 5322 §2.1.1); ends with CRLF.
void append_field(std::string& out, std::string_view name, std::string_view value) {
  std::string line(name);
  line += ": ";
  size_t line_length = line.size();
  out += line;
  size_t pos = 0;
  bool first = true;
  while (pos < value.size()) {
    size_t space = value.find(' ', pos + 1);
    if (space == std::string_view::npos) space = value.size();
    std::string_view word = value.substr(pos, space - pos);  // with its leading space, except the first
    if (!first && line_length + word.size() > 78) {
      // Fold before the space (RFC 5322 §2.2.3): unfolding, which removes
      // only the CRLF, gives back the value.
      out += "\r\n";
      line_length = 0;
    }
    // A word too long for any line (xtext of a long non-ASCII reply has no
    // spaces) is broken: lines never exceed 998 octets (RFC 5322 §2.1.1).
    while (line_length + word.size() > 998 && line_length < 998) {
      const size_t take = 998 - line_length;
      out += word.substr(0, take);
      out += "\r\n ";
      word.remove_prefix(take);
      line_length = 1;
    }
    out += word;
    line_length += word.size();
    first = false;
    pos = space;
  }
  out += "\r\n";
}

// "rfc822;a@b" → "rfc822; a@b"; a value without a type gets rfc822.
std::string typed_address(std::string_view orcpt, bool utf8_allowed) {
  const size_t semicolon = orcpt.find(';');
  if (semicolon == std::string_view::npos) return concat({"rfc822; ", field_value(orcpt, utf8_allowed)});
  std::string out = field_value(orcpt.substr(0, semicolon), false);
  out += "; ";
  out += field_value(orcpt.substr(semicolon + 1), utf8_allowed);
  return out;
}

// Final-Recipient: an address with non-ASCII characters is of RFC 6533
// type utf-8 (only in a global report; elsewhere it cannot occur, and
// xtext keeps it readable).
std::string final_recipient(std::string_view address, bool global) {
  if (global && !is_ascii(address)) return concat({"utf-8; ", field_value(address, true)});
  return concat({"rfc822; ", field_value(address, false)});
}

std::string_view subject(Action kind, Audience audience) {
  switch (kind) {
    case Action::failed:
      if (audience == Audience::postmaster_copy) return "Postmaster Copy: Undelivered Mail";
      if (audience == Audience::double_bounce) return "Postmaster Notice: Undelivered Mail from <>";
      return "Undelivered Mail Returned to Sender";
    case Action::delayed:
      return "Delayed Mail (still being retried)";
    case Action::delivered:
    case Action::relayed:
      break;
  }
  return "Successful Mail Delivery Report";
}

std::string recipient_line(const RecipientReport& r) {
  std::string line = "<";
  line += plain(r.final_recipient);
  line += ">: ";
  switch (r.action) {
    case Action::delivered:
      return line + "delivered to the mailbox";
    case Action::relayed:
      line += "passed on to ";
      line += r.remote_mta.empty() ? std::string("the next mail system") : plain(r.remote_mta);
      return line + ", which does not send delivery notifications";
    case Action::failed:
    case Action::delayed:
      break;
  }
  if (!r.reason.empty()) {
    line += plain(r.reason);
  } else if (!r.diagnostic.empty()) {
    line += "host ";
    line += plain(r.remote_mta);
    line += " said: ";
    line += plain(r.diagnostic);
  } else {
    line += r.status;
  }
  return line;
}

std::string human_text(const Report& report, Action kind, Returned returned, bool shrunk) {
  std::string t = "This is the mail system at " + report.reporting_mta + ".\r\n\r\n";
  if (report.audience == Audience::postmaster_copy) {
    t += wrapped(concat({"This is a copy of a delivery failure report sent to <", plain(report.original_sender),
                         "> (queue ID ", report.queue_id, "), for the postmaster."}));
    t += "\r\n";
  }
  if (report.audience == Audience::double_bounce) {
    t += "A message from the null sender <> (queue ID " + report.queue_id +
         "), such as a delivery notice, could not be\r\n"
         "delivered. It cannot be returned to a sender, so it comes to the\r\n"
         "postmaster. The report for its sender would have read:\r\n\r\n";
  }
  switch (kind) {
    case Action::failed:
      t += "Your message could not be delivered to the recipients below; the mail\r\n"
           "system has given up on them. The reason is given for each one.\r\n\r\n"
           "What you can do: check each address for typing errors and send the\r\n"
           "message again. If the reason names a problem on the receiving side\r\n"
           "(a full mailbox, a refused message), contact the recipient another\r\n"
           "way or forward this report to your postmaster.\r\n";
      break;
    case Action::delayed:
      t += "Your message has not been delivered yet to the recipients below. The\r\n"
           "mail system is still trying: you do not need to send it again.\r\n";
      if (!report.recipients.empty() && report.recipients.front().will_retry_until_us > 0) {
        t += "It will go on trying until " + smtp::rfc5322_date(report.recipients.front().will_retry_until_us) +
             ";\r\nyou will get another report if it gives up.\r\n";
      }
      break;
    case Action::delivered:
    case Action::relayed:
      t += "Your message was delivered as you asked to be told. A recipient marked\r\n"
           "\"passed on\" was handed to a mail system that does not send delivery\r\n"
           "notifications: you will get no further report about it.\r\n";
      break;
  }
  t += "\r\n";
  for (const auto& r : report.recipients) t += wrapped(recipient_line(r));
  t += "\r\n";
  switch (returned) {
    case Returned::full:
      t += "Your message is attached.\r\n";
      break;
    case Returned::headers:
      t += shrunk ? "The header of your message is attached (the whole message was larger than " +
                        std::to_string(report.max_returned_size) + " bytes).\r\n"
                  : std::string("The header of your message is attached.\r\n");
      break;
    case Returned::nothing:
      break;
  }
  return t;
}

// A boundary that occurs nowhere in the parts (RFC 2046 §5.1.1).
std::string choose_boundary(const Report& report, std::string_view text) {
  std::string base = "=_tern_" + report.queue_id + "_" + std::to_string(report.now_us % 1'000'000'007);
  std::string boundary = base;
  for (unsigned n = 1;
       report.content.find(boundary) != std::string_view::npos || text.find(boundary) != std::string_view::npos; ++n)
    boundary = base + "_" + std::to_string(n);
  return boundary;
}

}  // namespace

std::string_view action_name(Action a) {
  switch (a) {
    case Action::failed:
      return "failed";
    case Action::delayed:
      return "delayed";
    case Action::delivered:
      return "delivered";
    case Action::relayed:
      return "relayed";
  }
  return "failed";
}

std::string_view audience_name(Audience a) {
  switch (a) {
    case Audience::sender:
      return "sender";
    case Audience::postmaster_copy:
      return "postmaster_copy";
    case Audience::double_bounce:
      return "double_bounce";
  }
  return "sender";
}

std::string_view header_section(std::string_view content) {
  if (content.starts_with("\r\n")) return content.substr(0, 2);
  const size_t end = content.find("\r\n\r\n");
  return end == std::string_view::npos ? content : content.substr(0, end + 4);
}

BuiltReport build_report(const Report& report) {
  const Action kind = report.recipients.empty() ? Action::failed : report.recipients.front().action;
  const bool global = report.smtputf8;

  // What of the original goes back.
  Returned returned = report.returned;
  bool shrunk = false;
  if (returned == Returned::full &&
      (report.binary || (report.max_returned_size > 0 && report.content.size() > report.max_returned_size))) {
    returned = Returned::headers;
    shrunk = !report.binary;
  }
  std::string_view returned_text;
  if (returned == Returned::full) returned_text = report.content;
  if (returned == Returned::headers) {
    returned_text = header_section(report.content);
    if (report.max_returned_size > 0 && returned_text.size() > report.max_returned_size) returned = Returned::nothing;
  }
  if (report.content.empty()) returned = Returned::nothing;

  // The machine-readable part (RFC 3464 §2.2, §2.3).
  std::string status;
  append_field(status, "Reporting-MTA", concat({"dns; ", field_value(report.reporting_mta, false)}));
  append_field(status, "X-Tern-Queue-ID", report.queue_id);
  if (!report.original_sender.empty())
    append_field(status, "X-Tern-Sender", final_recipient(report.original_sender, global));
  if (!report.envid.empty()) append_field(status, "Original-Envelope-Id", field_value(report.envid, false));
  if (report.arrival_us > 0) append_field(status, "Arrival-Date", smtp::rfc5322_date(report.arrival_us));
  for (const auto& r : report.recipients) {
    status += "\r\n";
    append_field(status, "Final-Recipient", final_recipient(r.final_recipient, global));
    if (!r.original_recipient.empty())
      append_field(status, "Original-Recipient", typed_address(r.original_recipient, global));
    append_field(status, "Action", action_name(r.action));
    append_field(status, "Status", field_value(r.status, false));
    if (!r.remote_mta.empty()) append_field(status, "Remote-MTA", concat({"dns; ", field_value(r.remote_mta, false)}));
    if (!r.diagnostic.empty()) {
      append_field(status, "Diagnostic-Code", concat({"smtp; ", field_value(r.diagnostic, global)}));
    } else if (!r.reason.empty()) {
      append_field(status, "Diagnostic-Code", concat({"X-Tern; ", field_value(r.reason, global)}));
    }
    if (r.last_attempt_us > 0) append_field(status, "Last-Attempt-Date", smtp::rfc5322_date(r.last_attempt_us));
    if (r.action == Action::delayed && r.will_retry_until_us > 0)
      append_field(status, "Will-Retry-Until", smtp::rfc5322_date(r.will_retry_until_us));
  }

  const std::string text = human_text(report, kind, returned, shrunk);
  const std::string boundary = choose_boundary(report, text + status);

  // The report itself.
  BuiltReport built;
  built.returned = returned;
  built.smtputf8 = global && (!is_ascii(report.to) || !is_ascii(report.original_sender));
  std::string& out = built.content;
  out.reserve(text.size() + status.size() + returned_text.size() + 1024);
  append_field(out, "Date", smtp::rfc5322_date(report.now_us));
  append_field(out, "From", concat({"Mail Delivery System <MAILER-DAEMON@", report.reporting_mta, ">"}));
  append_field(out, "To", concat({"<", field_value(report.to, global), ">"}));
  append_field(out, "Subject", subject(kind, report.audience));
  append_field(out, "Message-ID", report.message_id);
  if (!report.original_message_id.empty() && !has_controls(report.original_message_id) &&
      is_ascii(report.original_message_id)) {
    append_field(out, "In-Reply-To", report.original_message_id);
    append_field(out, "References", report.original_message_id);
  }
  append_field(out, "Auto-Submitted", "auto-replied");
  append_field(out, "MIME-Version", "1.0");
  append_field(out, "Content-Type", "multipart/report; report-type=delivery-status; boundary=\"" + boundary + "\"");
  const size_t header_end = out.size();
  out += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

  out += concat({"--", boundary, "\r\n"});
  append_field(out, "Content-Description", "Notification");
  append_field(out, "Content-Type", is_ascii(text) ? "text/plain; charset=us-ascii" : "text/plain; charset=utf-8");
  append_field(out, "Content-Transfer-Encoding", is_ascii(text) ? "7bit" : "8bit");
  out += "\r\n";
  out += text;
  out += concat({"\r\n--", boundary, "\r\n"});
  append_field(out, "Content-Description", "Delivery report");
  append_field(out, "Content-Type", global ? "message/global-delivery-status" : "message/delivery-status");
  if (!is_ascii(status)) append_field(out, "Content-Transfer-Encoding", "8bit");
  out += "\r\n";
  out += status;
  if (returned != Returned::nothing) {
    const bool whole = returned == Returned::full;
    out += concat({"\r\n--", boundary, "\r\n"});
    append_field(out, "Content-Description", whole ? "Undelivered Message" : "Undelivered Message Headers");
    append_field(out, "Content-Type",
                 whole ? (global ? "message/global" : "message/rfc822")
                       : (global ? "message/global-headers" : "text/rfc822-headers"));
    append_field(out, "Content-Transfer-Encoding", is_ascii(returned_text) ? "7bit" : "8bit");
    out += "\r\n";
    out += returned_text;
    if (!returned_text.ends_with("\r\n")) out += "\r\n";
  }
  out += concat({"\r\n--", boundary, "--\r\n"});

  built.eight_bit = !is_ascii(out);
  if (!built.smtputf8) built.smtputf8 = !is_ascii(std::string_view(out).substr(0, header_end));
  return built;
}

}  // namespace tern::dsn
