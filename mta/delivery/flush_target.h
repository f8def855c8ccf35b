// Which queued messages an administrator's flush (`ternctl flush`) or a
// client's ETRN (RFC 1985) means. Pure: no I/O.
#pragma once
#include <string_view>

#include "queue/envelope.h"

namespace tern::delivery {

// `target` is a queue ID (that message), a domain ("example.test": messages
// with a pending recipient there) or "@domain" (RFC 1985 §4: the domain and
// its subdomains). Domains compare without regard to case; only messages
// waiting for a retry or not yet tried (incoming, retry1, retry2) match:
// held, quarantined and active messages are not the flush's to move.
bool flush_matches(const queue::Envelope& envelope, std::string_view target);

}  // namespace tern::delivery
