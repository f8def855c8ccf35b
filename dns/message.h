// The parts of a DNS response the resolver needs, read from the wire format
// (RFC 1035 §4) ourselves because c-ares 1.18 neither reports MX TTLs nor
// the SOA of the authority section that negative caching needs (RFC 2308).
// Pure: no I/O.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dns/address.h"
#include "queue/result.h"

namespace tern::dns {

enum class RecordType : uint16_t { a = 1, cname = 5, soa = 6, mx = 15, txt = 16, aaaa = 28 };

enum class Rcode : uint8_t { no_error = 0, format_error = 1, server_failure = 2, name_error = 3,
                             not_implemented = 4, refused = 5 };

struct MxRecord {
  uint16_t preference = 0;
  std::string exchange;  // lower case, no trailing dot; "" is the root (null MX)
  bool operator==(const MxRecord&) const = default;
};

struct Response {
  uint8_t rcode = 0;  // an Rcode value (others are possible on the wire)
  // Answer records of the asked type, whatever their owner (a CNAME chain
  // in front of them is followed by the server, as c-ares does too).
  std::vector<MxRecord> mx;
  std::vector<IpAddress> addresses;  // A or AAAA answers
  // TXT answers, one per record: its character-strings concatenated
  // (RFC 7208 §3.3 reads them the same way), bytes as they came.
  std::vector<std::string> texts;
  // Lowest TTL among the answer records (CNAMEs included): how long the set
  // may be cached. 0 when there are no answers.
  uint32_t answer_ttl = 0;
  // RFC 2308 §5: a negative answer may be cached for min(SOA TTL, SOA
  // MINIMUM) of the SOA in the authority section; empty without one.
  std::optional<uint32_t> negative_ttl;
};

// Parses a response to a question of type `asked`. Fails on truncated or
// malformed messages (compression loops, names longer than 255 octets).
Result<Response> parse_response(std::span<const uint8_t> message, RecordType asked);

// Lower case, without the trailing dot: the form names are compared in.
std::string normalize_name(std::string_view name);

}  // namespace tern::dns
