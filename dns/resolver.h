// The asynchronous resolver: c-ares on the worker's io_uring loop, no
// resolver threads. c-ares tells us which sockets to watch (its socket state
// callback); the loop polls them and hands readiness back to c-ares, and a
// loop timer drives c-ares' retransmissions and timeouts. One Resolver per
// loop, used only on that loop's thread; its cache is its own.
//
//   auto route = co_await resolver.resolve_mx("example.test");
//   if (!route) bounce_or_retry(route.error().permanent(), route.error().enhanced_code());
//   for (const MxHost& host : route->hosts) ... host.addresses ...
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dns/address.h"
#include "dns/cache.h"
#include "dns/hosts.h"
#include "dns/outcome.h"
#include "dns/route.h"
#include "mta/io/loop.h"
#include "mta/io/task.h"
#include "queue/result.h"

namespace tern::dns {

struct ResolverOptions {
  // DNS servers as "ip:port", "ip" (port 53) or "[ipv6]:port"; empty: the
  // servers of /etc/resolv.conf.
  std::vector<std::string> servers;
  int64_t timeout_ms = 5'000;  // per try, before c-ares moves on
  unsigned tries = 2;          // attempts per server
  size_t cache_entries = 10'000;  // record sets kept; 0 disables the cache
  uint32_t max_ttl_s = 86'400;           // positive answers are kept at most this long
  uint32_t negative_ttl_cap_s = 900;     // NXDOMAIN/NODATA: SOA minimum, at most this
  HostsTable hosts;  // checked before DNS, for MX domains and host names alike
};

using MxResult = DnsResult<MxRoute>;
using AddrResult = DnsResult<std::vector<IpAddress>>;
using TextResult = DnsResult<std::vector<std::string>>;

class Resolver {
 public:
  // Fails when c-ares cannot be initialised or the server list is invalid.
  static Result<std::unique_ptr<Resolver>> create(io::Loop& loop, ResolverOptions options);
  // Lookups must have finished; sockets c-ares still has open are closed
  // and their polls cancelled (they complete on the loop afterwards).
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The hosts to deliver mail for `domain` to, best first: an address
  // literal ("[192.0.2.1]", "[IPv6:...]") or a host-table name without DNS;
  // otherwise its MX hosts ordered by preference (equal preferences
  // shuffled) with their A/AAAA addresses, or the domain's own addresses
  // when it has no MX (implicit MX). Fails with null_mx, nxdomain,
  // no_address, unroutable, bad_literal or temporary (see outcome.h).
  // Callers drop MX hosts that are us with drop_ourselves (route.h).
  io::Task<MxResult> resolve_mx(std::string domain);

  // The A and AAAA addresses of `host` (both asked at once; A first in the
  // result), from an address literal, the host table, the cache or DNS.
  io::Task<AddrResult> resolve_addresses(std::string host);

  // Plain DNS lookups of one record type, for names that are not mail
  // hosts (DNS blocklists and the like): no address literals, no host
  // table, just the cache (negative answers included) and then DNS.
  // NXDOMAIN fails with Failure::nxdomain; NODATA (the name exists, no
  // record of the type) is an empty vector; SERVFAIL, REFUSED, timeouts
  // and unreadable answers fail with Failure::temporary (never cached).
  //
  // The A records of `name`.
  io::Task<AddrResult> lookup_a(std::string name);
  // The A records of several names: every query not answered from the cache
  // is sent before the first answer is awaited, so they run concurrently.
  // One result per name, in order.
  io::Task<std::vector<AddrResult>> lookup_a_many(std::vector<std::string> names);
  // The TXT records of `name`, one string per record: its
  // character-strings concatenated (octets as received, unfiltered).
  io::Task<TextResult> lookup_txt(std::string name);

  size_t cache_size() const { return cache_.size(); }

  struct Channel;  // c-ares and its watches, shared with the loop's pending polls

 private:
  Resolver(ResolverOptions options, std::shared_ptr<Channel> channel);
  io::Task<DnsResult<RecordSet>> lookup(std::string name, RecordType type);
  // `names` (normalized) of one type, the queries all in flight at once.
  io::Task<std::vector<DnsResult<RecordSet>>> lookup_many(std::vector<std::string> names, RecordType type);
  // The record set a reply means; stored in the cache when it may be.
  struct Reply;
  DnsResult<RecordSet> absorb(const std::string& name, RecordType type, const Reply& reply);
  class Query;

  ResolverOptions options_;
  CacheLimits limits_;
  Cache cache_;
  std::mt19937 rng_;
  std::shared_ptr<Channel> channel_;
};

}  // namespace tern::dns
