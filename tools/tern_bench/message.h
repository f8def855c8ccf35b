// The messages tern-bench sends. The body is built once (76-character lines)
// and shared read-only by every thread; per message only the header block
// is written, into a buffer the caller reuses, so sending allocates nothing.
//   Date, From, To, Subject, Message-ID (<RUNID.INDEX@bench.tern>),
//   X-Tern-Bench-Sent: <unix micros>, blank line, padding lines.
// headers.size() + padding.size() is the requested size within one line
// (78 octets), never less than the header block. Nothing starts with '.',
// so DATA needs no dot-stuffing. Pure.
#pragma once
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace tern::bench {

inline constexpr size_t kPaddingLineLength = 78;  // 76 characters + CRLF

class MessageFactory {
 public:
  // `max_size`: the largest size build() will be asked for.
  MessageFactory(uint64_t max_size, std::string run_id);

  // Writes the header block of message `index` to *headers (cleared first)
  // and returns the padding that completes it to `size`. `to` is the To:
  // header's value, `date` an RFC 5322 date (rfc5322_date()).
  std::string_view build(uint64_t index, uint64_t size, int64_t sent_unix_micros, std::string_view from,
                         std::string_view to, std::string_view date, std::string* headers) const;

  const std::string& run_id() const { return run_id_; }

 private:
  std::string run_id_;
  std::string padding_;
};

// "Mon, 23 Nov 2026 01:52:13 +0000"
std::string rfc5322_date(time_t t);

// 16 lowercase hex digits from the system's random source.
std::string random_run_id();

// The AUTH PLAIN initial response: base64("\0user\0password"); base64 for
// AUTH LOGIN is smtp::base64_encode (mta/smtp/sasl.h).
std::string auth_plain_response(std::string_view user, std::string_view password);

}  // namespace tern::bench
