// How tern-sink stores a message (--maildir, --mbox) and what it reads from
// one (the X-Tern-Bench-Sent stamp). Pure: no I/O.
//
// A stored message starts with the envelope, so tests of senders can read it
// back: "Return-Path: <sender>", then "X-Tern-Sink-Mail-Params: PARAMS"
// when the MAIL command had ESMTP parameters, then per recipient one
// "X-Tern-Sink-Rcpt: <rcpt>" line, followed by
// "X-Tern-Sink-Rcpt-Params: rcpt PARAMS" (rcpt without brackets) when that
// RCPT command had parameters; then the message as received. PARAMS is the
// text as the client sent it after the path's closing '>' (e.g.
// "RET=HDRS ENVID=abc+2Bdef"), trimmed of surrounding spaces, so tests can
// check that a sender passed them on unchanged. Line ends are LF, the local
// convention of both Maildir and mbox files.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/local/maildir.h"

namespace tern::sink {

struct Envelope {
  std::string sender;  // "" for the null reverse-path
  std::vector<std::string> recipients;
  std::string mail_params{};               // MAIL parameters as sent; "" when none
  std::vector<std::string> rcpt_params{};  // parallel to recipients (may be shorter); "" when none
};

// One Maildir file's content.
std::string format_maildir_message(const Envelope& env, std::string_view content);
// One mboxrd entry: the "From " separator line (dated `unix_seconds`, UTC),
// the envelope lines, the content with every line matching ^>*From  quoted
// by one more '>', and the blank line that ends an entry.
std::string format_mbox_message(const Envelope& env, std::string_view content, int64_t unix_seconds);
// A unique Maildir file name: "<sec>.M<usec>P<pid>Q<sequence>.<hostname>";
// the one local delivery uses (mta/local/maildir.h).
using local::maildir_file_name;

// The X-Tern-Bench-Sent stamp of the message's header section (CRLF or LF
// lines, up to the first empty line); nullopt when absent.
std::optional<int64_t> find_sent_stamp(std::string_view content);

}  // namespace tern::sink
