// The outbound half of ternd: delivery loops (threads with their own
// io_uring loops) that take due messages from the spool, route each
// recipient, resolve MX hosts, deliver over cached connections within the
// concurrency limits, and record every outcome (delivered, retry1, retry2,
// failed) back in the spool. ternd's workers only receive; these threads
// only deliver.
//
// Inside (see docs/ARCHITECTURE.md):
//   scanner      due messages from incoming, retry1, retry2 → active
//                (the home loop, loop 0)
//   router       each pending recipient → next hop; jobs grouped by hop,
//                each handed to the loop that owns its hop (home loop)
//   destinations per hop, on the loop that owns it: a job queue,
//                connections (at most max_per_destination), idle
//                connections kept for reuse
//   settle       outcomes → envelope → finished / retry queue / expired;
//                the notices they call for (DSNs) are queued first (on the
//                loop that finished the message's last job)
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dns/address.h"
#include "dns/resolver.h"
#include "mta/delivery/retry_ladder.h"
#include "mta/dsn/notice_plan.h"
#include "mta/local/local_resolver.h"
#include "mta/delivery/router.h"
#include "mta/delivery/smtp_client.h"
#include "queue/result.h"
#include "queue/spool.h"

namespace tern::delivery {

// Local delivery into Maildirs (docs/configuration.md, [local]).
struct LocalSettings {
  std::string maildir_root;
  uint64_t quota = 0;            // bytes per mailbox; 0 = unlimited
  std::vector<std::pair<std::string, uint64_t>> user_quotas;  // user -> bytes, instead of quota
  uint64_t quota_of(std::string_view user) const;
  bool quota_permanent = false;  // over quota: 5.2.2 (else 4.2.2, retried)
};

struct EngineSettings {
  RetrySettings retry;
  LocalSettings local;
  std::shared_ptr<const local::LocalResolver> local_recipients;  // never null
  dsn::NoticeSettings notices;
  RoutingTable routing;
  ClientSettings client;
  dns::ResolverOptions dns;
  std::vector<dns::IpAddress> our_addresses;  // MX hosts with these addresses are us (5.4.6)
  uint16_t smtp_port = 25;                    // port of MX hosts and of hops without one
  unsigned loops = 1;                         // delivery loops (threads), each owning its share of destinations
  unsigned max_connections = 500;             // outbound, in total, over every loop
  unsigned max_per_destination = 20;
  double destination_rate = 0;                // messages/s per destination; 0 = unlimited
  unsigned max_messages_per_connection = 100;
  int64_t connection_cache_ms = 5'000;        // an idle connection waits this long for more mail
  int64_t scan_interval_ms = 1'000;
  size_t scan_batch = 1'000;                  // messages taken per queue and scan
  size_t active_limit = 20'000;               // messages taken and not yet settled, at most
  size_t active_per_destination = 5'000;      // of them for one next hop; 0 = no bound of its own
};

class DeliveryEngine {
 public:
  // Starts the threads; the router's name is resolved once, at start (a
  // router that does not resolve is logged and not used).
  static Result<std::unique_ptr<DeliveryEngine>> start(queue::Spool& spool, EngineSettings settings);
  ~DeliveryEngine();  // stop() and join
  DeliveryEngine(const DeliveryEngine&) = delete;
  DeliveryEngine& operator=(const DeliveryEngine&) = delete;

  // Thread-safe: look for due mail now (new mail was committed, or an
  // administrator asked for a flush).
  void wake();
  // Thread-safe: make queued mail due now and look for it: the message
  // `target` (a queue ID), every message with a pending recipient in domain
  // `target` ("@domain": with its subdomains), or with an empty target all
  // mail waiting in incoming, retry1 and retry2 (ternctl flush, ETRN).
  // `done(n)` runs on the home loop's thread with how many messages matched.
  void flush(std::string target, std::function<void(size_t)> done);
  // Thread-safe: hold a destination's mail (`hold` true: its recipients are
  // not tried; messages left with only them wait in `hold`) or release it
  // (those messages go to retry1, due now). The held set survives restarts
  // (a file in the spool directory). `done` runs on the home loop's thread with
  // the number of messages released, or why the change could not be saved.
  void hold_domain(std::string domain, bool hold, std::function<void(Result<size_t>)> done);
  // Thread-safe: fail the pending recipients of message `id` (all, or
  // those named in `recipients`) with a failure DSN, reason "deleted by
  // the administrator" (ternctl bounce). `done` runs on the home loop's thread
  // with the number of recipients failed, or why nothing was done.
  void bounce(std::string id, std::vector<std::string> recipients, std::function<void(Result<size_t>)> done);
  // Thread-safe: the local recipient table after a reload (SIGHUP).
  void set_local_recipients(std::shared_ptr<const local::LocalResolver> resolver);
  // Thread-safe: messages in the active set now (taken from the queues, not
  // yet settled); at most EngineSettings::active_limit.
  size_t active_messages() const;
  // Thread-safe: messages put back in their queue because a next hop of
  // theirs held its share of the active set (since start), and the next
  // hops that have had mail put back and still hold some.
  uint64_t put_back_messages() const;
  size_t destinations_at_share() const;
  // Thread-safe: take no more mail; connections end after their current
  // transaction. Messages not finished stay in `active`, which recovery
  // returns to `incoming` at the next start (delivery is at least once).
  void stop();
  // Thread-safe: every loop has ended (after stop(), once every connection
  // finished its transaction).
  bool finished() const;
  // Thread-safe: end every loop now, whatever is in flight (after the drain
  // time); unfinished messages stay in `active` for recovery.
  void abandon();

  struct Impl;

 private:
  explicit DeliveryEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::delivery
