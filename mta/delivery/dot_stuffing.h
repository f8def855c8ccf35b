// The content of a message on its way out through DATA (RFC 5321 section
// 4.5.2): every line that starts with "." gets one more, and the content
// ends with <CRLF>.<CRLF>. Streamed in pieces, so a 50 MB message is never
// copied whole. Pure: no I/O.
//   DotStuffer stuffer(content);
//   while (!stuffer.done()) { piece.clear(); stuffer.next(&piece, 256 * 1024); send(piece); }
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace tern::delivery {

class DotStuffer {
 public:
  // `content` as stored: CRLF lines, not stuffed. It must outlive the stuffer.
  explicit DotStuffer(std::string_view content);

  // Appends the next piece to *out: the stuffed form of (at most)
  // `max_input` further octets of the content; after the last of them, the
  // end of the data. A line start is any octet after LF, so a bare LF
  // followed by "." cannot end the data at a lenient receiver either.
  void next(std::string* out, size_t max_input);
  bool done() const { return done_; }

 private:
  std::string_view rest_;
  bool at_line_start_ = true;
  // Content that does not end in CRLF (a BDAT message may not) gets one
  // before the final ".": DATA has no other way to end it.
  bool needs_line_end_ = false;
  bool done_ = false;
};

}  // namespace tern::delivery
