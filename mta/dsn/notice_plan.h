// Which delivery status notifications an event calls for, and the
// messages that carry them: reports to the sender (failure, delay,
// success, as each recipient's NOTIFY asks), the postmaster's copy of every
// failure report, the double bounce when a message from <> fails. Pure:
// the delivery engine queues what this returns.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mta/dsn/dsn_builder.h"
#include "queue/envelope.h"

namespace tern::dsn {

enum class DelayNotices : uint8_t {
  off,
  on_retry2,  // when a recipient moves from the first to the second retry queue
  after_age,  // once the message has waited `delay_after_ms`
};

struct NoticeSettings {
  std::string hostname;  // Reporting-MTA and the MAILER-DAEMON address
  // A failed message from <> (a notice) is reported to this address (the
  // double bounce); empty: it is dropped (and logged).
  std::string double_bounce_to;
  // Receives a copy of every failure report (the old system's NONDELIVERY
  // mailbox); empty: none.
  std::string failure_copy_to;
  bool failure_copy_content = false;  // the copy carries the returned message (else only the report)
  DelayNotices delay = DelayNotices::on_retry2;
  int64_t delay_after_ms = 4 * 3'600'000LL;
  int64_t delay_interval_ms = 24 * 3'600'000LL;  // at most one delay notice per recipient per this period
  size_t max_returned_size = 102'400;            // larger originals come back as headers only
};

// What happened to one recipient (index into the envelope's recipients).
struct RecipientEvent {
  size_t recipient = 0;
  Action action = Action::failed;
};

struct Notice {
  Audience audience = Audience::sender;
  Action action = Action::failed;
  queue::Envelope envelope;  // from <>, one recipient, id and arrival set; queue incoming, due now
  std::string content;       // CRLF lines; stored as one chunk
};

struct NoticePlan {
  std::vector<Notice> notices;
  // Notices that were due and not made, each with why: a failed message to
  // the postmaster (no double bounce of a double bounce), or double bounces
  // switched off.
  std::vector<std::string> dropped;
};

// Whether a recipient asked for a notice of this kind (RFC 3461 §4.1):
// without NOTIFY, failures and delays; NOTIFY=NEVER, none.
bool wants(uint8_t notify, Action action);

// Whether the pending recipient `r` of `envelope` (which this attempt left
// in a retry queue) is due a delay notice at `now_us`.
bool delay_notice_due(const queue::Envelope& envelope, const queue::Recipient& r, const NoticeSettings& settings,
                      int64_t now_us);

// The notices for `events` of `original` (whose stored content is
// `content`). `will_retry_until_us` goes into delay notices. `new_id` gives
// each notice its queue ID.
NoticePlan plan_notices(const queue::Envelope& original, std::span<const RecipientEvent> events,
                        std::string_view content, const NoticeSettings& settings, int64_t now_us,
                        int64_t will_retry_until_us, const std::function<std::string()>& new_id);

}  // namespace tern::dsn
