// The routing decision for one recipient, in the order the delivery issue
// fixes: local domains, the transport table, the mail router in firewall
// mode, the forward-mail host, otherwise MX. Pure: no I/O (whether the
// router's name resolved is the caller's knowledge, passed in).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/delivery/next_hop.h"

namespace tern::delivery {

struct TransportEntry {
  std::string pattern;  // "example.test" (that domain) or "*.example.test" (its subdomains only)
  NextHop hop;          // kind relay ([host]:port) or mx (mx:domain)
};

struct RoutingTable {
  std::vector<std::string> local_domains;  // lower case
  std::vector<TransportEntry> transport;   // first match wins; exact entries before wildcards
  std::optional<NextHop> router;           // the mail router (smarthost), kind relay
  bool firewall = false;                   // every non-local recipient through the router
  std::optional<NextHop> forward;          // "forward mail domain": all non-local mail to this host
};

class Router {
 public:
  explicit Router(RoutingTable table);
  // The hop for `recipient` (an address as stored: local@domain, domain in
  // any case, possibly an address literal "[192.0.2.1]"). `router_usable`
  // is false when the router's name did not resolve at start: firewall mode
  // then routes like direct delivery and there is no fallback.
  NextHop route(std::string_view recipient, bool router_usable) const;
  // The hop to try when direct (MX) delivery found no route, if any.
  std::optional<NextHop> fallback(bool router_usable) const;
  const RoutingTable& table() const { return table_; }

 private:
  RoutingTable table_;
};

}  // namespace tern::delivery
