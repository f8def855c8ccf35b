// Client side of SMTP replies (RFC 5321 section 4.2): assembling one reply
// from its lines ("250-first", "250 last"), its code, its RFC 3463 enhanced
// code, and the keywords of an EHLO reply. Pure: no I/O. Used by tern-bench
// and by the delivery client.
//   ReplyParser p;
//   while (p.feed(line) == ReplyParser::State::need_more) line = next_line();
//   if (p.reply().code == 250) ...
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::smtp {

struct ParsedReply {
  int code = 0;          // 250, 354, 421, ...
  std::string enhanced;  // "2.1.0" when the first line starts with one, else empty
  std::string text;      // the lines' text after "NNN-" / "NNN ", joined by '\n'

  int klass() const { return code / 100; }  // 2, 3, 4 or 5
  bool positive() const { return code >= 200 && code < 400; }
  std::vector<std::string_view> lines() const;
};

// Feeds the lines of one reply, line ends removed. A reply is complete at
// its first line with a space (or nothing) after the code. Malformed: a line
// that does not start with three digits (first in 2..5) followed by ' ',
// '-' or the line end, or a continuation line with a different code.
class ReplyParser {
 public:
  enum class State { need_more, complete, malformed };
  // After complete or malformed, the next feed() starts a new reply.
  State feed(std::string_view line);
  const ParsedReply& reply() const { return reply_; }
  void reset();

 private:
  ParsedReply reply_;
  bool in_reply_ = false;
};

// "2.1.0" at the start of `text` (class 2, 4 or 5; subject and detail of 1-3
// digits) followed by a space or the end; nullopt otherwise.
std::optional<std::string_view> parse_enhanced_code(std::string_view text);

// What a 250 reply to EHLO advertises (RFC 5321 section 4.1.1.1: the first
// line is the greeting, each further line a keyword and its parameters).
struct EhloInfo {
  std::vector<std::string> keywords;  // upper-cased, in order
  bool pipelining = false;
  bool chunking = false;
  bool starttls = false;
  bool enhanced_status_codes = false;
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  uint64_t size = 0;                   // SIZE parameter; 0 when absent or unlimited
  std::vector<std::string> auth;       // mechanisms, upper-cased
  bool has(std::string_view keyword) const;
  bool has_auth(std::string_view mechanism) const;
};
EhloInfo parse_ehlo(const ParsedReply& reply);

}  // namespace tern::smtp
