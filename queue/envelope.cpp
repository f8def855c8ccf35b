#include "queue/envelope.h"

#include <array>
#include <limits>

namespace tern::queue {
namespace {

constexpr std::array<std::pair<QueueName, std::string_view>, 7> kQueueNames{{
    {QueueName::incoming, "incoming"},
    {QueueName::active, "active"},
    {QueueName::retry1, "retry1"},
    {QueueName::retry2, "retry2"},
    {QueueName::hold, "hold"},
    {QueueName::busy, "busy"},
    {QueueName::quarantine, "quarantine"},
}};

bool equals_ignoring_ascii_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Encoding, version 2 (version 1, still read, lacks the recipients' DSN
// fields and the origin). Every field in declaration order:
//   unsigned integers  LEB128 varint, canonical (shortest form)
//   signed integers    zigzag, then varint
//   strings            varint length, then the bytes
//   bool, enums, NotifyFlags  one byte
// The decoder is strict (canonical varints, known enum values, no trailing
// bytes), so every accepted input re-encodes to exactly the same bytes and a
// damaged record is refused rather than half-read.
constexpr uint8_t kFormatVersion = 2;
constexpr uint8_t kFormatVersion1 = 1;

// Room reserved up front: most envelopes fit, so encoding one allocates once.
constexpr size_t kTypicalEncodedBytes = 512;

class Writer {
 public:
  explicit Writer(size_t reserve) { out_.reserve(reserve); }
  void byte(uint8_t b) { out_.push_back(static_cast<char>(b)); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      byte(static_cast<uint8_t>(v | 0x80));
      v >>= 7;
    }
    byte(static_cast<uint8_t>(v));
  }
  void signed_varint(int64_t v) { varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void string(std::string_view s) {
    varint(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Every read checks the remaining length first; the first failure sticks, so
// callers decode a whole record and test ok() once.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }

  uint8_t byte() {
    if (!ok_ || pos_ >= in_.size()) return fail<uint8_t>();
    return static_cast<uint8_t>(in_[pos_++]);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = byte();
      if (!ok_) return 0;
      uint64_t bits = b & 0x7f;
      // The tenth byte may carry only the top bit of a 64-bit value.
      if (shift == 63 && bits > 1) return fail<uint64_t>();
      v |= bits << shift;
      if ((b & 0x80) == 0) {
        // A zero final byte after the first means an over-long encoding.
        if (b == 0 && shift > 0) return fail<uint64_t>();
        return v;
      }
    }
    return fail<uint64_t>();
  }
  int64_t signed_varint() {
    uint64_t z = varint();
    return static_cast<int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  uint32_t varint32() {
    uint64_t v = varint();
    if (v > std::numeric_limits<uint32_t>::max()) return fail<uint32_t>();
    return static_cast<uint32_t>(v);
  }
  std::string string() {
    uint64_t n = varint();
    if (!ok_ || n > remaining()) return fail<std::string>();
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  bool boolean() {
    uint8_t b = byte();
    if (b > 1) return fail<bool>();
    return b == 1;
  }

  template <typename T>
  T fail() {
    ok_ = false;
    return T{};
  }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

bool valid_queue_byte(uint8_t b) {
  return b >= static_cast<uint8_t>(QueueName::incoming) && b <= static_cast<uint8_t>(QueueName::quarantine);
}

constexpr uint8_t kAllNotifyFlags = notify_never | notify_success | notify_failure | notify_delay;
// The smallest encoding of one recipient: four empty strings/bytes plus state.
constexpr size_t kMinRecipientBytes = 5;

}  // namespace

std::string_view to_string(QueueName q) {
  for (const auto& [name_value, name] : kQueueNames) {
    if (name_value == q) return name;
  }
  return "unknown";
}

std::optional<QueueName> parse_queue_name(std::string_view s) {
  for (const auto& [name_value, name] : kQueueNames) {
    if (equals_ignoring_ascii_case(s, name)) return name_value;
  }
  return std::nullopt;
}

std::string encode(const Envelope& env) {
  Writer w(kTypicalEncodedBytes);
  w.byte(kFormatVersion);
  w.string(env.id);
  w.string(env.sender);
  w.varint(env.size_param);
  w.string(env.body_type);
  w.byte(env.smtputf8 ? 1 : 0);
  w.string(env.ret);
  w.string(env.envid);
  w.varint(env.recipients.size());
  for (const Recipient& r : env.recipients) {
    w.string(r.address);
    w.byte(r.notify);
    w.string(r.orcpt);
    w.byte(static_cast<uint8_t>(r.state));
    w.string(r.last_error);
    w.string(r.status);
    w.string(r.remote_mta);
    w.string(r.diagnostic);
    w.signed_varint(r.last_attempt_us);
    w.signed_varint(r.delay_notified_us);
  }
  w.signed_varint(env.arrival_us);
  w.string(env.client_ip);
  w.string(env.client_helo);
  w.string(env.protocol);
  w.string(env.message_id);
  w.varint(env.body_size);
  w.varint(env.body_chunks);
  w.byte(static_cast<uint8_t>(env.queue));
  w.signed_varint(env.next_attempt_us);
  w.varint(env.attempts);
  w.string(env.last_error);
  w.byte(static_cast<uint8_t>(env.origin));
  return w.take();
}

std::optional<Envelope> decode_envelope(std::string_view bytes) {
  Reader r(bytes);
  const uint8_t version = r.byte();
  if (version != kFormatVersion && version != kFormatVersion1) return std::nullopt;
  const bool v2 = version == kFormatVersion;
  Envelope env;
  env.id = r.string();
  env.sender = r.string();
  env.size_param = r.varint();
  env.body_type = r.string();
  env.smtputf8 = r.boolean();
  env.ret = r.string();
  env.envid = r.string();
  uint64_t recipient_count = r.varint();
  // Bound the count by what the input could hold before allocating for it.
  if (!r.ok() || recipient_count > r.remaining() / kMinRecipientBytes) return std::nullopt;
  env.recipients.reserve(recipient_count);
  for (uint64_t i = 0; i < recipient_count && r.ok(); ++i) {
    Recipient& rcpt = env.recipients.emplace_back();
    rcpt.address = r.string();
    rcpt.notify = r.byte();
    if ((rcpt.notify & ~kAllNotifyFlags) != 0) return std::nullopt;
    rcpt.orcpt = r.string();
    uint8_t state = r.byte();
    if (state > static_cast<uint8_t>(RecipientState::failed)) return std::nullopt;
    rcpt.state = static_cast<RecipientState>(state);
    rcpt.last_error = r.string();
    if (v2) {
      rcpt.status = r.string();
      rcpt.remote_mta = r.string();
      rcpt.diagnostic = r.string();
      rcpt.last_attempt_us = r.signed_varint();
      rcpt.delay_notified_us = r.signed_varint();
    }
  }
  env.arrival_us = r.signed_varint();
  env.client_ip = r.string();
  env.client_helo = r.string();
  env.protocol = r.string();
  env.message_id = r.string();
  env.body_size = r.varint();
  env.body_chunks = r.varint32();
  uint8_t queue = r.byte();
  if (!valid_queue_byte(queue)) return std::nullopt;
  env.queue = static_cast<QueueName>(queue);
  env.next_attempt_us = r.signed_varint();
  env.attempts = r.varint32();
  env.last_error = r.string();
  if (v2) {
    const uint8_t origin = r.byte();
    if (origin > static_cast<uint8_t>(Origin::postmaster_notice)) return std::nullopt;
    env.origin = static_cast<Origin>(origin);
  }
  if (!r.ok() || !r.at_end()) return std::nullopt;
  return env;
}

}  // namespace tern::queue
