// The message content of DATA (RFC 5321 §4.1.4, §4.5.2) and BDAT (RFC 3030),
// as a streaming state machine. Pure: no I/O, fuzzed.
//
// DATA: input is dot-stuffed; the end is only <CRLF>.<CRLF> (a "." line
// ended by CRLF at the start of a line). Bare LF or bare CR anywhere is an
// error (550 5.6.0) unless allow_bare_lf, in which case each is normalised to
// CRLF — but never ends the data, so nothing can be smuggled.
// BDAT: input is the raw content of the chunks; the same line rules apply
// across chunk boundaries; finish() is called after the LAST chunk.
// Output is the unstuffed content with CRLF line ends.
//
// Errors do not stop consumption: the reader keeps consuming (DATA must still
// find its end) and verdict() gives the reply for the end of the data.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mta/smtp/reply.h"

namespace tern::smtp {

struct ContentLimits {
  uint64_t max_size = 52'428'800;  // output octets; 552 5.3.4 beyond
  unsigned max_line_length = 1000;  // octets incl. CRLF; 500 5.5.2 beyond
  unsigned max_received = 100;      // Received: headers; 554 5.4.6 beyond
  bool allow_bare_lf = false;
};

class DataReader {
 public:
  enum class Mode { data, bdat };
  DataReader(Mode mode, ContentLimits limits);

  // Consumes input and returns how many bytes were consumed: all of `in`,
  // except in DATA mode when the terminator is found (consumption stops just
  // after it; the rest belongs to the next command — pipelining).
  size_t feed(std::string_view in);
  // BDAT: the LAST chunk has been fed. A final line without CRLF is kept as is.
  void finish();
  bool done() const { return done_; }

  // Content produced and not yet taken. The output is not stored once an
  // error verdict is set (no point keeping what will be refused).
  std::string take_output();
  size_t pending_output() const { return out_.size(); }

  // The reply to give at the end of the data when it must be refused, in
  // priority order: 552 5.3.4 (size), 554 5.4.6 (loop), 550 5.6.0 (bare LF/CR),
  // 500 5.5.2 (line too long).
  std::optional<Reply> verdict() const;
  uint64_t size() const { return size_; }  // content octets (after unstuffing/normalising)
  const std::string& message_id() const { return message_id_; }  // Message-ID header value, trimmed
  unsigned received_headers() const { return received_; }

 private:
  Mode mode_;
  ContentLimits limits_;
  bool done_ = false;
  std::string out_;
  uint64_t size_ = 0;
  std::string message_id_;
  unsigned received_ = 0;
  // line state
  enum class State { line_start, in_line, after_cr, dot_at_start, dot_after_cr } state_ = State::line_start;
  uint64_t line_len_ = 0;
  bool in_headers_ = true;
  std::string header_line_;  // current header line, while in headers (bounded)
  bool too_big_ = false, bare_lf_ = false, line_too_long_ = false;
  void end_line();
  void emit(std::string_view s);
};

}  // namespace tern::smtp
