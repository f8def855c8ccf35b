// One answer to (name, type) as the resolver keeps it: records, "no such
// data" or "no such domain", and how long it may be cached. Pure: no I/O.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dns/message.h"
#include "dns/outcome.h"

namespace tern::dns {

struct RecordSet {
  enum class Kind { answer, no_data, nxdomain };
  Kind kind = Kind::answer;
  std::vector<MxRecord> mx;          // for MX questions
  std::vector<IpAddress> addresses;  // for A and AAAA questions
  std::vector<std::string> texts;    // for TXT questions: one string per record
};

// NOERROR with records → answer; NOERROR without → no_data (RFC 2308 NODATA);
// NXDOMAIN → nxdomain; any other rcode (SERVFAIL, REFUSED, ...) → a
// temporary error naming `name`.
DnsResult<RecordSet> classify(const Response& response, std::string_view name, RecordType type);

struct CacheLimits {
  uint32_t max_ttl_s = 86'400;
  uint32_t negative_ttl_cap_s = 900;
};

// Seconds `set` may be cached: an answer for its records' lowest TTL, a
// negative one for the SOA's min(TTL, MINIMUM) (RFC 2308 §5), or the cap
// when the server sent no SOA; both bounded by the limits.
uint32_t cache_ttl(const Response& response, const RecordSet& set, const CacheLimits& limits);

std::string_view type_name(RecordType type);

}  // namespace tern::dns
