// What one delivery attempt means for a message's envelope: each
// recipient's outcome recorded, then where the message goes next (finished,
// a retry queue with its due time, or hold). Pure: no I/O; the delivery
// engine logs and stores what these functions decide.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "mta/delivery/retry_ladder.h"
#include "mta/delivery/smtp_client.h"
#include "queue/envelope.h"

namespace tern::delivery {

// Records one recipient's outcome: delivered and permanent failures become
// final (state delivered / failed), a temporary failure leaves the recipient
// pending. last_error keeps the remote reply (or our reason) and the host
// ("550 5.1.1 no such user (mx1.example.test[192.0.2.1])") for the log and
// the DSN; status, remote_mta, diagnostic and last_attempt_us keep the
// same apart, for the DSN's fields.
void record_outcome(queue::Envelope& envelope, const RecipientOutcome& outcome, std::string_view host,
                    int64_t attempt_us);

// Fails every pending recipient with RFC 3463 `status` and `reason`
// (expiry, the administrator); the last remote reply stays for the DSN.
void fail_pending(queue::Envelope& envelope, std::string_view status, std::string_view reason);

bool has_pending(const queue::Envelope& envelope);

struct Disposition {
  enum class Kind {
    finished,  // no recipient pending: remove from the queue
    retry,     // envelope.queue / next_attempt_us set to the retry step
    expired,   // too old: the pending recipients were failed; remove
    hold,      // only recipients that were not tried are left: see Waiting
  } kind = Kind::finished;
};

// Pending recipients this attempt did not try, and why: those of a
// destination the administrator holds. They do not make a retry; a message left with only them goes on
// hold with `reason` as its last_error.
struct Waiting {
  size_t count = 0;
  std::string reason;
};

// The last_error of a message held because of a held destination: release
// looks for it.
std::string held_destination_reason(std::string_view domain);
bool held_for_destination(const queue::Envelope& envelope);

// After an attempt at `now_us`: counts the attempt and settles the message.
Disposition settle(queue::Envelope& envelope, const RetrySettings& retry, int64_t now_us, const Waiting& waiting,
                   std::mt19937_64& rng);

}  // namespace tern::delivery
