#include "tools/tern_sink/message_format.h"

#include <ctime>

#include "tools/loadkit/bench_header.h"

namespace tern::sink {
namespace {

void append_envelope(std::string& out, const Envelope& env) {
  out += "Return-Path: <";
  out += env.sender;
  out += ">\n";
  if (!env.mail_params.empty()) {
    out += "X-Tern-Sink-Mail-Params: ";
    out += env.mail_params;
    out += '\n';
  }
  for (size_t i = 0; i < env.recipients.size(); ++i) {
    const std::string& r = env.recipients[i];
    out += "X-Tern-Sink-Rcpt: <";
    out += r;
    out += ">\n";
    if (i < env.rcpt_params.size() && !env.rcpt_params[i].empty()) {
      out += "X-Tern-Sink-Rcpt-Params: ";
      out += r;
      out += ' ';
      out += env.rcpt_params[i];
      out += '\n';
    }
  }
}

// Calls fn(line) for each line of `content` without its line end (CRLF or
// LF); a last line without a line end is passed too.
template <typename Fn>
void for_each_line(std::string_view content, Fn fn) {
  while (!content.empty()) {
    size_t lf = content.find('\n');
    std::string_view line = content.substr(0, lf);
    if (lf != std::string_view::npos && line.ends_with('\r')) line.remove_suffix(1);
    if (!fn(line)) return;
    if (lf == std::string_view::npos) return;
    content.remove_prefix(lf + 1);
  }
}

bool is_from_line(std::string_view line) {
  while (line.starts_with('>')) line.remove_prefix(1);
  return line.starts_with("From ");
}

}  // namespace

std::string format_maildir_message(const Envelope& env, std::string_view content) {
  std::string out;
  out.reserve(content.size() + 64 * (env.recipients.size() + 1));
  append_envelope(out, env);
  for_each_line(content, [&](std::string_view line) {
    out += line;
    out += '\n';
    return true;
  });
  return out;
}

std::string format_mbox_message(const Envelope& env, std::string_view content, int64_t unix_seconds) {
  std::string out;
  out.reserve(content.size() + 64 * (env.recipients.size() + 2));
  time_t t = static_cast<time_t>(unix_seconds);
  tm utc{};
  gmtime_r(&t, &utc);
  char date[32];
  size_t n = strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &utc);  // asctime layout
  out += "From ";
  out += env.sender.empty() ? "MAILER-DAEMON" : env.sender;
  out += ' ';
  out.append(date, n);
  out += '\n';
  append_envelope(out, env);
  for_each_line(content, [&](std::string_view line) {
    if (is_from_line(line)) out += '>';
    out += line;
    out += '\n';
    return true;
  });
  out += '\n';
  return out;
}

std::optional<int64_t> find_sent_stamp(std::string_view content) {
  std::optional<int64_t> stamp;
  for_each_line(content, [&](std::string_view line) {
    if (line.empty()) return false;  // end of the header section
    stamp = loadkit::parse_sent_header(line);
    return !stamp;
  });
  return stamp;
}

}  // namespace tern::sink
