#include "tools/tern_bench/message.h"

#include <charconv>
#include <random>

#include "mta/smtp/sasl.h"
#include "tools/loadkit/bench_header.h"

namespace tern::bench {

namespace {
void append_number(std::string* out, uint64_t n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  out->append(buf, end);
}
}  // namespace

MessageFactory::MessageFactory(uint64_t max_size, std::string run_id) : run_id_(std::move(run_id)) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string line;
  for (size_t i = 0; i < kPaddingLineLength - 2; ++i) line.push_back(kAlphabet[i % kAlphabet.size()]);
  line += "\r\n";
  size_t lines = static_cast<size_t>(max_size / kPaddingLineLength) + 1;
  padding_.reserve(lines * kPaddingLineLength);
  for (size_t i = 0; i < lines; ++i) padding_ += line;
}

std::string_view MessageFactory::build(uint64_t index, uint64_t size, int64_t sent_unix_micros, std::string_view from,
                                       std::string_view to, std::string_view date, std::string* headers) const {
  headers->clear();
  headers->append("Date: ").append(date).append("\r\n");
  headers->append("From: <").append(from).append(">\r\n");
  headers->append("To: ").append(to).append("\r\n");
  headers->append("Subject: tern-bench message ");
  append_number(headers, index);
  headers->append("\r\nMessage-ID: <").append(run_id_).append(".");
  append_number(headers, index);
  headers->append("@bench.tern>\r\n");
  headers->append(loadkit::kSentHeader).append(": ");
  append_number(headers, static_cast<uint64_t>(sent_unix_micros < 0 ? 0 : sent_unix_micros));
  headers->append("\r\n\r\n");
  if (size <= headers->size()) return {};
  uint64_t missing = size - headers->size();
  uint64_t lines = (missing + kPaddingLineLength / 2) / kPaddingLineLength;  // nearest whole line
  size_t bytes = static_cast<size_t>(lines * kPaddingLineLength);
  if (bytes > padding_.size()) bytes = padding_.size() / kPaddingLineLength * kPaddingLineLength;
  return std::string_view(padding_).substr(0, bytes);
}

std::string rfc5322_date(time_t t) {
  tm parts{};
  gmtime_r(&t, &parts);
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &parts);
  return std::string(buf, n);
}

std::string random_run_id() {
  std::random_device rd;
  uint64_t v = (uint64_t{rd()} << 32) ^ rd();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kHex[v & 15];
    v >>= 4;
  }
  return out;
}

std::string auth_plain_response(std::string_view user, std::string_view password) {
  std::string raw;
  raw.push_back('\0');
  raw.append(user);
  raw.push_back('\0');
  raw.append(password);
  return smtp::base64_encode(raw);
}

}  // namespace tern::bench
