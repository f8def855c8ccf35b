// DNS blocklists (RFC 5782): the query name for a client address and the
// lookup through the resolver on the worker's loop.
//
//   auto hit = co_await policy::check_dnsbl(resolver, client_ip, {"bl.example"});
//   if (hit) reply 554 ... hit->reason;
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dns/address.h"
#include "dns/resolver.h"
#include "mta/io/task.h"

namespace tern::policy {

// The name to look up for `ip` in `zone` (RFC 5782 §2.1, §2.4):
// IPv4 192.0.2.1 → "1.2.0.192.ZONE"; IPv6 → its 32 nibbles in reverse order,
// lower-case hex, dot-separated, then ZONE. An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is looked up as the IPv4 address. A trailing dot of
// `zone` is dropped; the zone is otherwise used as written.
std::string dnsbl_query_name(const dns::IpAddress& ip, std::string_view zone);

// Whether an A answer means "listed": 127.0.0.0/8 (RFC 5782 §2.1), except
// 127.255.255.0/24, which big lists (Spamhaus) return to mean "query
// refused" (open resolver, over quota), never a listing.
bool is_listing_answer(const dns::IpAddress& answer);

struct DnsblHit {
  std::string zone;    // as configured, without a trailing dot
  std::string reason;  // the TXT text, or "listed in ZONE"
};

// Looks `client` up in every zone, all A queries at once; the first zone
// (in the order given) whose answer is a listing wins, and its TXT records
// give the reason: each record's strings concatenated, records joined with
// "; ", made safe for an SMTP reply (printable ASCII only, at most
// kMaxReasonLength characters); "listed in ZONE" when there is none.
// NXDOMAIN, NODATA, other answers and failures (SERVFAIL, timeout: the
// resolver's timeout × tries bounds the wait) are "not listed": fail open.
// Answers, negative ones included, come from the resolver's TTL cache when
// it has them. Runs on the resolver's loop; `client` and `zones` must stay
// alive until it completes (a co_await in one expression ensures that).
io::Task<std::optional<DnsblHit>> check_dnsbl(dns::Resolver& resolver, const dns::IpAddress& client,
                                              const std::vector<std::string>& zones);

inline constexpr size_t kMaxReasonLength = 200;

// `text` with every octet outside printable ASCII replaced by '?', cut to
// kMaxReasonLength (exposed for tests).
std::string sanitize_reason(std::string_view text);

}  // namespace tern::policy
