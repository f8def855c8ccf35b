// The pure half of the SMTP client (smtp_client.h): the commands of one
// mail transaction, built from the envelope and what the server offers
// (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 DSN), and what
// each reply means for each recipient. No I/O: SmtpClient writes the
// commands, reads the replies and feeds them here in order.
//   ClientTransaction tx(message, ehlo);
//   if (!tx.settled()) { send tx.mail_command(), tx.rcpt_command(k)...; feed the replies }
//   return tx.take_outcomes();
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/delivery/smtp_client.h"
#include "mta/smtp/reply_parser.h"

namespace tern::delivery {

// A reply's text on one line (lines joined by a space), without the
// enhanced code (on any line that repeats it), which outcomes and errors
// carry apart.
std::string text_of(const smtp::ParsedReply& reply);
// The enhanced status code a reply stands for: its own when it gave one of
// its class, else the generic code of the class (RFC 3463: "2.0.0",
// "4.0.0", "5.0.0"); "4.5.0" (protocol error) for a 1xx or 3xx reply.
std::string enhanced_code_of(const smtp::ParsedReply& reply);

class ClientTransaction {
 public:
  // Decides at once what needs no dialogue: a message over the server's
  // SIZE fails 5.3.4 for every recipient, an SMTPUTF8 message to a server
  // without SMTPUTF8 fails 5.6.7 (RFC 6531 section 3.4), both permanently.
  // `message` and `server` must outlive the transaction.
  ClientTransaction(const OutboundMessage& message, const smtp::EhloInfo& server);

  // Every recipient has its outcome: nothing (more) to send.
  bool settled() const;

  // "MAIL FROM:<sender>" with SIZE= when the server offers SIZE,
  // BODY=8BITMIME for an 8BITMIME message when it offers 8BITMIME (without
  // it the content goes as it is, as Postfix does: RFC 6152 leaves the
  // sender the choice, and refusing would be worse), BODY=BINARYMIME for a
  // BINARYMIME message when it offers BINARYMIME and CHUNKING (RFC 3030
  // section 3: only BDAT carries it), SMTPUTF8, and RET=,
  // ENVID= when it offers DSN. CRLF-terminated.
  std::string mail_command() const;
  size_t recipient_count() const { return message_.recipients.size(); }
  // "RCPT TO:<address>" of the message's k-th recipient, with NOTIFY= and
  // ORCPT= when the server offers DSN. CRLF-terminated.
  std::string rcpt_command(size_t k) const;
  // "BDAT <content size> LAST", CRLF-terminated: the whole content as one
  // chunk (RFC 3030), for a server that offers CHUNKING.
  std::string bdat_command() const;

  // The replies, in the order of the commands. After a refused MAIL every
  // recipient has MAIL's outcome, and later replies (pipelined RCPTs, DATA:
  // 503) change nothing.
  void on_mail_reply(const smtp::ParsedReply& reply);
  bool mail_accepted() const { return mail_accepted_; }
  void on_rcpt_reply(size_t k, const smtp::ParsedReply& reply);
  size_t accepted_count() const;
  // DATA answered with anything but 354: every accepted recipient fails as
  // the reply says (a 2xx there is a protocol error: temporary).
  void on_data_refused(const smtp::ParsedReply& reply);
  // The reply after the content: every accepted recipient gets it.
  void on_final_reply(const smtp::ParsedReply& reply);
  // A 421 (RFC 5321 section 3.8: the server is closing): every recipient
  // without an outcome fails temporarily with that reply.
  void on_service_closing(const smtp::ParsedReply& reply);
  // No reply will come (timeout, lost connection, malformed reply): every
  // recipient without an outcome fails temporarily with our reason.
  void on_no_reply(std::string_view enhanced, std::string_view text);

  // One outcome per recipient of the message, in its order. A recipient the
  // dialogue left undecided is temporary, so it is retried, never lost.
  std::vector<RecipientOutcome> take_outcomes();

 private:
  enum class Stage : unsigned char { open, accepted, decided };
  void decide(size_t k, RecipientOutcome::Kind kind, int code, std::string enhanced, std::string text);
  void decide_by_reply(size_t k, const smtp::ParsedReply& reply);

  const OutboundMessage& message_;
  const smtp::EhloInfo& server_;
  bool mail_accepted_ = false;
  std::vector<Stage> stages_;
  std::vector<RecipientOutcome> outcomes_;
};

}  // namespace tern::delivery
