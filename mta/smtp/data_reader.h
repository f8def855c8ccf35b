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
  // Where the reader is within a line. `dot` and `dot_cr` exist in DATA mode
  // only: a "." at the start of a line, resp. "." CR, still undecided
  // between dot-stuffing, a lone "." line and the terminator.
  enum class State : uint8_t { line_start, in_line, after_cr, dot, dot_cr };
  enum class MessageIdCapture : uint8_t { none, capturing, done };

  bool refused() const { return too_big_ || received_ > limits_.max_received || bare_line_end_ || line_too_long_; }
  void refuse_flag(bool& flag);
  void emit(std::string_view s);
  void line_content(const char* s, size_t n);
  void end_line(bool crlf);
  void bare_line_end();
  void end_header_line();
  void end_header_field();

  // Largest first, to keep the object compact.
  ContentLimits limits_;
  std::string out_;
  std::string message_id_;
  std::string header_line_;       // current header line, bounded (data_reader.cpp)
  std::string message_id_field_;  // unfolded Message-ID value being captured, bounded
  uint64_t size_ = 0;
  uint64_t line_len_ = 0;  // content octets of the current line, after unstuffing
  unsigned received_ = 0;
  Mode mode_;
  State state_ = State::line_start;
  MessageIdCapture message_id_capture_ = MessageIdCapture::none;
  bool done_ = false;
  // The current line follows a real CRLF (or is the first line): only then
  // can a "." line end DATA.
  bool after_crlf_ = true;
  bool in_headers_ = true;
  bool header_line_truncated_ = false;
  bool message_id_truncated_ = false;
  bool too_big_ = false, bare_line_end_ = false, line_too_long_ = false;
};

}  // namespace tern::smtp
