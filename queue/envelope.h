// The envelope of a queued message: everything but the body.
// Pure data plus a versioned binary encoding; no I/O.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::queue {

// Named queues. The numeric values are part of the on-disk schedule key: never renumber.
enum class QueueName : uint8_t {
  incoming = 1,
  active = 2,
  retry1 = 3,    // first-level retry: short intervals
  retry2 = 4,    // second-level retry: long intervals
  hold = 5,      // held by the administrator
  busy = 6,      // parked while the spool is short of space
  quarantine = 7,
};
// Every queue, in the order of their numbers.
inline constexpr std::array<QueueName, 7> kAllQueues{QueueName::incoming, QueueName::active, QueueName::retry1,
                                                     QueueName::retry2,   QueueName::hold,   QueueName::busy,
                                                     QueueName::quarantine};
std::string_view to_string(QueueName q);
std::optional<QueueName> parse_queue_name(std::string_view s);

// RFC 3461 NOTIFY as a bit set; 0 means "not given".
enum NotifyFlags : uint8_t {
  notify_never = 1,
  notify_success = 2,
  notify_failure = 4,
  notify_delay = 8,
};

enum class RecipientState : uint8_t { pending = 0, delivered = 1, failed = 2 };

// Where a message came from. A notice that fails is never reported to its
// null sender: a report goes to the postmaster instead (double bounce), and a
// failed notice to the postmaster is dropped.
enum class Origin : uint8_t {
  received = 0,           // from a client
  report = 1,             // a delivery status notification for a sender
  postmaster_notice = 2,  // a double bounce or a postmaster copy
};

struct Recipient {
  std::string address;  // as given, source route stripped; no angle brackets
  uint8_t notify = 0;   // NotifyFlags
  std::string orcpt;    // RFC 3461 ORCPT, "addr-type;xtext-decoded-address", empty when absent
  RecipientState state = RecipientState::pending;
  std::string last_error;
  // For delivery status notifications (RFC 3464), from the last attempt:
  std::string status{};       // RFC 3463 code, "5.1.1"
  std::string remote_mta{};   // the host that replied, empty when none did
  std::string diagnostic{};   // its reply as received ("550 5.1.1 no such user"), empty when none
  int64_t last_attempt_us = 0;
  int64_t delay_notified_us = 0;  // when the last delay notice about it was queued; 0: never
  bool operator==(const Recipient&) const = default;
};

struct Envelope {
  std::string id;      // queue ID (see queue_id.h)
  std::string sender;  // reverse-path without brackets; empty for <>
  // MAIL parameters
  uint64_t size_param = 0;  // SIZE= as declared, 0 when absent
  std::string body_type;    // "7BIT", "8BITMIME", "BINARYMIME" or empty
  bool smtputf8 = false;
  std::string ret;    // "FULL", "HDRS" or empty
  std::string envid;  // RFC 3461 ENVID, xtext-decoded, empty when absent
  std::vector<Recipient> recipients;
  // Reception
  int64_t arrival_us = 0;  // microseconds since the epoch
  std::string client_ip;
  std::string client_helo;
  std::string protocol;  // SMTP, ESMTP, ESMTPS, ESMTPSA...
  std::string message_id;  // Message-ID header, when the message had one
  uint64_t body_size = 0;  // bytes stored (including our Received: header)
  uint32_t body_chunks = 0;
  // Scheduling
  QueueName queue = QueueName::incoming;
  int64_t next_attempt_us = 0;  // due time in the schedule index
  uint32_t attempts = 0;
  std::string last_error;
  Origin origin = Origin::received;
  bool operator==(const Envelope&) const = default;
};

std::string encode(const Envelope& env);
std::optional<Envelope> decode_envelope(std::string_view bytes);

}  // namespace tern::queue
