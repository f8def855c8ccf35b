#include "mta/delivery/dot_stuffing.h"

#include <algorithm>

namespace tern::delivery {

DotStuffer::DotStuffer(std::string_view content)
    : rest_(content), needs_line_end_(!content.empty() && !content.ends_with("\r\n")) {}

void DotStuffer::next(std::string* out, size_t max_input) {
  if (done_) return;
  std::string_view piece = rest_.substr(0, std::max<size_t>(max_input, 1));
  rest_.remove_prefix(piece.size());
  while (!piece.empty()) {
    if (at_line_start_ && piece.front() == '.') out->push_back('.');
    const size_t lf = piece.find('\n');
    const size_t run = lf == std::string_view::npos ? piece.size() : lf + 1;
    out->append(piece.substr(0, run));
    at_line_start_ = lf != std::string_view::npos;
    piece.remove_prefix(run);
  }
  if (!rest_.empty()) return;
  if (needs_line_end_) out->append("\r\n");
  out->append(".\r\n");
  done_ = true;
}

}  // namespace tern::delivery
