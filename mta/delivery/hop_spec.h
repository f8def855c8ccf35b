// The written form of a next hop in the configuration (routing.router,
// routing.forward_host, the transport table's next_hop). Pure: no I/O.
//   "mx:example.test"        look up example.test's MX records
//   "relay.example.test"     that host (A/AAAA, no MX), port 25
//   "relay.example.test:587" that host and port
//   "[192.0.2.1]:2525"       that address ("[::1]:25" for IPv6)
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "queue/result.h"

namespace tern::delivery {

struct HopSpec {
  bool mx = false;    // "mx:domain"
  std::string host;   // lower case; an address as a literal: "[192.0.2.1]", "[IPv6:::1]"
  uint16_t port = 0;  // 0: not given
};

// Fails with a message saying what is wrong (for the configuration error).
Result<HopSpec> parse_hop_spec(std::string_view text);

}  // namespace tern::delivery
