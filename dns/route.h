// From DNS answers to a delivery route: MX ordering (RFC 5321 §5.1), null
// MX (RFC 7505), implicit MX, and "the MX is us". Pure: no I/O; randomness
// comes from the caller's generator so tests can seed it.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dns/address.h"
#include "dns/outcome.h"
#include "dns/record_set.h"

namespace tern::dns {

struct MxHost {
  uint16_t preference = 0;
  std::string name;                  // the MX exchange, or the domain itself for an implicit MX
  std::vector<IpAddress> addresses;  // A answers first, then AAAA; never empty in a route
};

struct MxRoute {
  enum class Source {
    mx,           // the domain's MX records
    implicit_mx,  // no MX: the domain's own A/AAAA (RFC 5321 §5.1)
    literal,      // an address literal, no DNS
    hosts_table,  // the local host table, no DNS
  };
  std::string domain;
  Source source = Source::mx;
  std::vector<MxHost> hosts;  // in the order to try them
};

// What the MX answer for `domain` says to do next.
struct MxPlan {
  enum class Kind { use_mx, implicit_mx, fail } kind = Kind::fail;
  std::vector<MxRecord> exchanges;  // use_mx: in the order to try
  DnsError error;                   // fail: nxdomain or null_mx
};
// An MX set whose exchange is the root ("MX 0 .") is a null MX: the domain
// accepts no mail. A root exchange among real MX hosts is skipped (RFC 7505
// §3: it is not a host). NXDOMAIN fails; no MX records (NODATA) means
// an implicit MX. Exchanges are ordered by order_mx.
MxPlan plan_mx(std::string_view domain, const RecordSet& mx_answer, std::mt19937& rng);

// Ascending preference; hosts of equal preference in random order, so load
// spreads across them (RFC 5321 §5.1).
void order_mx(std::vector<MxRecord>& records, std::mt19937& rng);

// The addresses of one name from its A and AAAA answers. Addresses from
// either make it a success; otherwise a temporary failure of either wins
// (the name may exist after all), then NXDOMAIN from both is nxdomain, and
// anything else is no_address.
DnsResult<std::vector<IpAddress>> merge_addresses(std::string_view name, const DnsResult<RecordSet>& a,
                                                  const DnsResult<RecordSet>& aaaa);

// Builds the route from the planned exchanges and each one's addresses
// (same order). Exchanges without addresses are left out; when none is
// left the route fails: temporarily if any exchange failed temporarily,
// otherwise permanently (unroutable, 5.4.4).
DnsResult<MxRoute> assemble_route(std::string_view domain, const std::vector<MxRecord>& exchanges,
                                  const std::vector<DnsResult<std::vector<IpAddress>>>& addresses);

// Is `target` this host? True when it is one of `ours` (the addresses we
// listen on and any we are known by) or the unspecified address.
bool is_us(const IpAddress& target, std::span<const IpAddress> ours);

// RFC 5321 §5.1: when an MX host is us, only hosts strictly more preferred
// than the best such host may be used. If none is left, mail for the domain
// would loop back to us: mail_loop (5.4.6). Routes from literals and the
// host table have a single host and fail the same way when it is us.
DnsResult<MxRoute> drop_ourselves(MxRoute route, std::span<const IpAddress> ours);

}  // namespace tern::dns
