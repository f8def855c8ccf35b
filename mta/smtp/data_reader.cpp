// DATA / BDAT message content: line ends, dot-unstuffing, limits, and the
// few header facts the session needs.
//
// Input that passes through unchanged (the common case: CRLF lines without
// a leading dot) is not copied line by line: feed() remembers where the
// current verbatim run started and appends it in one piece when something
// has to change (a dot dropped, a line end normalised) or the input ends.
#include "mta/smtp/data_reader.h"

#include <cstring>
#include <utility>

namespace tern::smtp {
namespace {

// Header lines and the Message-ID field are kept only up to this many
// octets: it bounds memory per connection whatever the client sends, and a
// Message-ID value longer than a line may be (RFC 5322 §2.1.1) is not
// captured anyway.
constexpr size_t header_capture_limit = 2048;
constexpr size_t max_message_id_octets = 998;

bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
}

// When `line` is a header field named `lower_name` (case-insensitive; RFC
// 5322 §4.5 obsolete syntax allows WSP before the colon), the position of
// its value; otherwise npos.
size_t field_value_start(std::string_view line, std::string_view lower_name) {
  if (line.size() <= lower_name.size()) return std::string_view::npos;
  for (size_t i = 0; i < lower_name.size(); ++i) {
    if (to_lower(line[i]) != lower_name[i]) return std::string_view::npos;
  }
  size_t i = lower_name.size();
  while (i < line.size() && is_wsp(line[i])) ++i;
  return i < line.size() && line[i] == ':' ? i + 1 : std::string_view::npos;
}

std::string_view trim_wsp(std::string_view s) {
  while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

DataReader::DataReader(Mode mode, ContentLimits limits) : limits_(limits), mode_(mode) {}

size_t DataReader::feed(std::string_view in) {
  if (done_) return 0;
  const char* p = in.data();
  const char* const end = p + in.size();
  const char* run = p;  // [run, p) is consumed input still to be output verbatim
  auto flush_run = [&] {
    if (p != run) emit({run, size_t(p - run)});
    run = p;
  };
  while (p != end && !done_) {
    switch (state_) {
      case State::line_start:
        if (mode_ == Mode::data && *p == '.') {
          flush_run();
          run = ++p;
          state_ = State::dot;
        } else {
          state_ = State::in_line;
        }
        break;
      case State::in_line: {
        const auto* lf = static_cast<const char*>(std::memchr(p, '\n', size_t(end - p)));
        const char* const lf_or_end = lf ? lf : end;
        const auto* cr = static_cast<const char*>(std::memchr(p, '\r', size_t(lf_or_end - p)));
        const char* const stop = cr ? cr : lf_or_end;
        line_content(p, size_t(stop - p));
        p = stop;
        if (p == end) break;
        if (*p == '\n') {
          flush_run();
          run = ++p;
          bare_line_end();
        } else if (p + 1 != end && p[1] == '\n') {
          p += 2;  // CRLF stays in the verbatim run
          end_line(true);
        } else {
          // A bare CR, or a CR at the end of this input: decided by the next octet.
          flush_run();
          run = ++p;
          state_ = State::after_cr;
        }
        break;
      }
      case State::after_cr:
        if (*p == '\n') {
          run = ++p;
          emit("\r\n");
          end_line(true);
        } else {
          bare_line_end();
        }
        break;
      case State::dot:
        if (*p == '\r') {
          run = ++p;
          state_ = State::dot_cr;
        } else if (*p == '\n') {
          // A "." line ended by a bare LF is content, never the end.
          run = ++p;
          line_content(".", 1);
          emit(".");
          bare_line_end();
        } else {
          state_ = State::in_line;  // the dot was stuffing: dropped
        }
        break;
      case State::dot_cr:
        if (*p == '\n' && after_crlf_) {
          run = ++p;
          done_ = true;
          if (in_headers_) end_header_field();
          break;
        }
        // Not the terminator: a lone "." line (after a bare line end, or
        // ended by a bare CR), kept as content.
        line_content(".", 1);
        emit(".");
        if (*p == '\n') {
          run = ++p;
          emit("\r\n");
          end_line(true);
        } else {
          bare_line_end();
        }
        break;
    }
  }
  flush_run();
  return size_t(p - in.data());
}

void DataReader::finish() {
  // DATA ends only with its terminator.
  if (mode_ != Mode::bdat || done_) return;
  if (state_ == State::after_cr) {
    bare_line_end();
  } else if (state_ == State::in_line && in_headers_) {
    end_header_line();  // a final header line without CRLF
  }
  if (in_headers_) end_header_field();
  done_ = true;
}

std::string DataReader::take_output() {
  return std::exchange(out_, {});
}

std::optional<Reply> DataReader::verdict() const {
  if (too_big_) return Reply{552, "5.3.4", "Message size exceeds fixed maximum message size"};
  if (received_ > limits_.max_received) return Reply{554, "5.4.6", "Too many Received headers: mail loop"};
  if (bare_line_end_) return Reply{550, "5.6.0", "Bare LF or CR in message content not allowed"};
  if (line_too_long_) return Reply{500, "5.5.2", "Line too long"};
  return std::nullopt;
}

void DataReader::refuse_flag(bool& flag) {
  flag = true;
  out_.clear();
}

void DataReader::emit(std::string_view s) {
  size_ += s.size();
  if (size_ > limits_.max_size && !too_big_) refuse_flag(too_big_);
  if (!refused()) out_.append(s);
}

void DataReader::line_content(const char* s, size_t n) {
  line_len_ += n;
  if (line_len_ > limits_.max_line_length && !line_too_long_) refuse_flag(line_too_long_);
  if (in_headers_ && n != 0) {
    const size_t room = header_capture_limit - header_line_.size();
    if (n > room) {
      header_line_truncated_ = true;
      n = room;
    }
    header_line_.append(s, n);
  }
}

void DataReader::end_line(bool crlf) {
  if (line_len_ + 2 > limits_.max_line_length && !line_too_long_) refuse_flag(line_too_long_);
  if (in_headers_) end_header_line();
  line_len_ = 0;
  after_crlf_ = crlf;
  state_ = State::line_start;
}

void DataReader::bare_line_end() {
  if (!limits_.allow_bare_lf && !bare_line_end_) refuse_flag(bare_line_end_);
  emit("\r\n");
  end_line(false);
}

void DataReader::end_header_line() {
  const std::string_view line = header_line_;
  if (line_len_ == 0) {
    end_header_field();
    in_headers_ = false;
  } else if (is_wsp(line.front())) {
    // A folded continuation: unfolding removes only the line break.
    if (message_id_capture_ == MessageIdCapture::capturing) {
      const size_t room = header_capture_limit - message_id_field_.size();
      if (line.size() > room || header_line_truncated_) message_id_truncated_ = true;
      message_id_field_.append(line.substr(0, room));
    }
  } else {
    end_header_field();
    if (field_value_start(line, "received") != std::string_view::npos) {
      if (++received_ > limits_.max_received) out_.clear();
    } else if (message_id_capture_ == MessageIdCapture::none) {
      const size_t value = field_value_start(line, "message-id");
      if (value != std::string_view::npos) {
        message_id_capture_ = MessageIdCapture::capturing;
        message_id_field_.assign(line.substr(value));
        message_id_truncated_ = header_line_truncated_;
      }
    }
  }
  header_line_.clear();
  header_line_truncated_ = false;
}

void DataReader::end_header_field() {
  if (message_id_capture_ != MessageIdCapture::capturing) return;
  // The first Message-ID field decides; one too long to be valid is not kept.
  const std::string_view value = trim_wsp(message_id_field_);
  if (!message_id_truncated_ && value.size() <= max_message_id_octets) message_id_ = value;
  message_id_capture_ = MessageIdCapture::done;
  message_id_field_ = std::string();
}

}  // namespace tern::smtp
