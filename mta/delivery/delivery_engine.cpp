#include "mta/delivery/delivery_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <random>
#include <thread>
#include <unordered_map>
#include <set>
#include <fstream>
#include <filesystem>
#include <mutex>
#include <utility>

#include "dns/route.h"
#include "mta/clock.h"
#include "mta/delivery/attempt_outcome.h"
#include "mta/delivery/destination_share.h"
#include "mta/delivery/flush_target.h"
#include "mta/dsn/notice_plan.h"
#include "mta/local/maildir.h"
#include "mta/text.h"
#include "mta/io/offload.h"
#include "mta/io/task.h"
#include "mta/log.h"
#include "mta/spool_await.h"
#include "queue/queue_id.h"
#include "queue/thread_name.h"

namespace tern::delivery {

namespace {

// RFC 5321 §5.1 asks to try several addresses; more than this many for one
// destination only multiplies the wait when the destination is down.
constexpr size_t kMaxAddressesPerDestination = 10;

// Content this small is read with its envelope when the scanner takes a
// message (one read for the whole scan batch) rather than by a read of its
// own when delivery starts: at most active_limit such bodies wait in memory
// (80 MB at the default 20,000), and larger ones, kept in blob files, are
// still read only when needed.
constexpr uint64_t kContentReadAtScan = 4 << 10;

struct Message {
  queue::Envelope envelope;
  queue::QueueName taken_from = queue::QueueName::incoming;
  // Jobs of one message may run on different loops: the last to finish
  // settles it.
  std::atomic<unsigned> jobs_left{0};
  Waiting waiting;  // pending recipients not tried: local, or a held destination
  // Each recipient's state when the message was taken: what changed is
  // what this attempt decided, and what the notices report.
  std::vector<queue::RecipientState> states_at_take;
  // What a NOTIFY=SUCCESS recipient hears once delivered (RFC 3461 §4.3):
  // "relayed" when a server without DSN took it, "delivered" when it went
  // into a local mailbox, nothing when a DSN-capable server carries the
  // request onward.
  std::vector<std::optional<dsn::Action>> success_notice;
  // Held while a job records its outcomes: jobs on other loops record
  // theirs at the same time, and though each writes only its own
  // recipients, a temporary failure also sets envelope.last_error.
  std::mutex outcomes_mutex;

  // The content, read from the spool at its first use; null until then.
  std::shared_ptr<const std::string> content() const {
    std::lock_guard lock(content_mutex_);
    return content_;
  }
  // Keeps `loaded` unless a job on another loop kept its copy first, and
  // returns the copy kept: a job may be sending from it, so it is never
  // replaced.
  std::shared_ptr<const std::string> keep_content(std::string loaded) {
    std::lock_guard lock(content_mutex_);
    if (!content_) content_ = std::make_shared<const std::string>(std::move(loaded));
    return content_;
  }

 private:
  mutable std::mutex content_mutex_;
  std::shared_ptr<const std::string> content_;
};

std::shared_ptr<Message> message_of(queue::Envelope envelope) {
  auto message = std::make_shared<Message>();
  message->taken_from = envelope.queue;
  message->envelope = std::move(envelope);
  for (const auto& r : message->envelope.recipients) message->states_at_take.push_back(r.state);
  message->success_notice.assign(message->envelope.recipients.size(), std::nullopt);
  return message;
}

// Some recipients of one message that share a next hop.
struct Job {
  std::shared_ptr<Message> message;
  std::vector<size_t> recipients;
  bool busy_logged = false;
};

// A job on its way to the loop that owns its destination.
struct HandedJob {
  NextHop hop;
  Job job;
};

// Items for another loop, taken there in batches: a burst of them costs
// one post (an eventfd write and a wake-up), not one each.
template <class T>
class Handoff {
 public:
  // True when the receiving loop must be posted to take them: the first
  // item since it last took.
  bool add(T item) {
    std::lock_guard lock(mutex_);
    items_.push_back(std::move(item));
    return !std::exchange(posted_, true);
  }
  std::vector<T> take() {
    std::lock_guard lock(mutex_);
    posted_ = false;
    return std::exchange(items_, {});
  }

 private:
  std::mutex mutex_;
  std::vector<T> items_;
  bool posted_ = false;
};

// One next hop: its queue of jobs and the connections serving it.
struct Destination {
  NextHop hop;
  std::deque<Job> jobs;
  // How many jobs at the front of `jobs` pump() has already looked at for
  // "resource_busy": jobs join at the back and leave from the front, and
  // each look covers every job present, so the jobs seen are a prefix and
  // pump() need only look past it (walking the whole backlog on every
  // enqueue made a large backlog quadratic).
  size_t jobs_seen_busy = 0;
  unsigned connections = 0;
  unsigned unassigned = 0;                 // connections connecting or idle: they will take a job
  std::vector<io::Loop::IoAwaiter*> idle;  // naps of idle connections; work cancels one
  int64_t next_send_us = 0;                // destination_rate pacing
  bool starved = false;                    // in line for a connection slot (Impl::slot_waiters)
};

// A host to connect to for a destination.
struct Candidate {
  std::string name;
  io::Endpoint endpoint;
};

// Why a destination has no host to try.
struct RouteFailure {
  bool permanent = false;
  std::string enhanced;
  std::string text;
  bool fallback_allowed = false;  // the mail router may still take it
};

std::string endpoint_text(const dns::IpAddress& address, uint16_t port) {
  const std::string ip = address.to_string();
  return (address.family == dns::IpAddress::Family::v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

std::string domain_of(std::string_view address) {
  const size_t at = address.rfind('@');
  return ascii_lower(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
}

std::string_view kind_name(RecipientOutcome::Kind kind) {
  switch (kind) {
    case RecipientOutcome::Kind::delivered: return "delivered";
    case RecipientOutcome::Kind::permanent: return "undeliverable";
    case RecipientOutcome::Kind::temporary: break;
  }
  return "deferred";
}

}  // namespace

struct DeliveryEngine::Impl {
  // One delivery loop: a thread with its io_uring loop, its offload thread
  // and its resolver, and the destinations it owns (owner()): their job
  // queues, connections, rate pacing and "resource busy" logging. A
  // destination lives on one loop only, so max_per_destination and
  // destination_rate hold exactly, as they did with one loop. Loop 0 is
  // also the home loop: see the members of Impl below.
  struct Shard {
    Shard(Impl& e, unsigned i) : engine(e), index(i), offload("tern-dlv-io-" + std::to_string(i)) {}

    Impl& engine;
    const unsigned index;
    std::unique_ptr<io::Loop> loop;
    std::unique_ptr<dns::Resolver> resolver;
    // Spool reads (on the home loop also local delivery and the
    // held-domains file). Named
    // "tern-dlv-io-N": "tern-deliver-io-N" is longer than the 15 bytes
    // Linux keeps of a thread's name.
    io::OffloadThread offload;
    std::thread thread;
    std::mt19937_64 rng{std::random_device{}()};
    std::atomic<bool> finished{false};  // the loop has ended
    Handoff<HandedJob> jobs_in;         // from the home loop's dispatch and other loops' fallbacks
    Handoff<std::string> slots_in;      // connection slots passed on to destinations here (by key)

    // ---- loop thread only ----
    std::unordered_map<std::string, std::unique_ptr<Destination>> destinations;
    // Destinations none of whose hosts answered, by key, until `until_us`:
    // meanwhile their jobs fail at once with `failure` (or go to the mail
    // router), as Postfix suspends a dead destination. A destination that
    // is down then neither takes room in the active set while connections
    // time out nor is tried again for every message taken; the suspension
    // lasts the ladder's shortest wait, so a retry at its due time tries
    // again. A flush or a release ends every suspension.
    struct Suspension {
      int64_t until_us = 0;
      RouteFailure failure;
    };
    std::unordered_map<std::string, Suspension> suspended;
    unsigned live_tasks = 0;
    bool stopping = false;

    bool is_home() const { return index == 0; }

    // Starts the thread; returns once its loop exists (or could not be made).
    Status start() {
      std::promise<Status> ready;
      auto result = ready.get_future();
      thread = std::thread([this, &ready] { run(&ready); });
      Status status = result.get();
      if (!status) thread.join();
      return status;
    }

    void run(std::promise<Status>* ready) {
      name_this_thread("tern-deliver-" + std::to_string(index));
      auto created = io::Loop::create();
      if (!created) {
        ready->set_value(Error{"delivery loop: " + created.error()});
        return;
      }
      loop = std::move(created.value());
      auto dns = dns::Resolver::create(*loop, engine.settings.dns);
      if (!dns) {
        ready->set_value(Error{"dns: " + dns.error()});
        return;
      }
      resolver = std::move(dns.value());
      if (is_home()) engine.load_held_domains();
      ready->set_value(Status{});  // `ready` dies with start(); not touched after this
      if (is_home()) io::spawn(engine.scanner());
      loop->run();
      finished.store(true, std::memory_order_release);
    }

    // ---- lifecycle ----
    void begin_stop() {
      if (stopping) return;
      stopping = true;
      for (auto& [key, d] : destinations) {
        for (auto* nap : d->idle) loop->cancel(nap);
        d->idle.clear();
      }
      end_if_done();
    }

    void end_if_done() {
      if (!stopping || live_tasks > 0 || !resolver) return;
      io::spawn(close_down());
    }

    // The resolver closes c-ares' sockets; their cancelled polls complete on
    // the loop, so it runs a little longer (bounded) before it stops.
    io::Task<void> close_down() {
      resolver.reset();
      for (int i = 0; i < 100 && loop->in_flight() > 0; ++i) co_await loop->sleep(10);
      loop->stop();
    }

    // ---- destinations ----
    void take_handed_jobs() {
      for (HandedJob& handed : jobs_in.take()) enqueue(handed.hop, std::move(handed.job));
    }

    Destination& destination(const NextHop& hop) {
      auto& slot = destinations[hop.key()];
      if (!slot) {
        slot = std::make_unique<Destination>();
        slot->hop = hop;
      }
      return *slot;
    }

    void enqueue(const NextHop& hop, Job job) {
      if (const RouteFailure* failure = suspension_of(hop)) {
        fail_job(hop, std::move(job), *failure);
        return;
      }
      Destination& d = destination(hop);
      d.jobs.push_back(std::move(job));
      if (!d.idle.empty()) {
        loop->cancel(d.idle.back());  // an idle connection takes it
        d.idle.pop_back();
        return;
      }
      pump(d);
    }

    // Opens connections while jobs outnumber the connections about to take
    // one, within the limits; jobs held back by a limit are logged once as
    // "resource busy" and wait in memory for the next free connection.
    void pump(Destination& d) {
      bool out_of_slots = false;
      while (wants_connection(d)) {
        if (!engine.take_connection_slot(*this, d)) {
          out_of_slots = true;
          break;
        }
        io::spawn(serve(d));
      }
      if (stopping || d.jobs.size() <= d.unassigned) return;
      for (; d.jobs_seen_busy < d.jobs.size(); ++d.jobs_seen_busy) {
        Job& job = d.jobs[d.jobs_seen_busy];
        // A job moved here from another destination (fallback) may be logged already.
        if (job.busy_logged) continue;
        job.busy_logged = true;
        log::event("resource_busy", {{"qid", job.message->envelope.id},
                                     {"destination", d.hop.host},
                                     {"limit", out_of_slots ? "max_connections" : "max_per_destination"}});
      }
    }

    bool wants_connection(const Destination& d) const {
      return !stopping && d.jobs.size() > d.unassigned && d.connections < engine.settings.max_per_destination;
    }

    // Connection slots other connections gave up, each for a destination
    // that waited for one (by key: it may be gone since).
    void take_granted_slots() {
      for (const std::string& key : slots_in.take()) {
        auto found = destinations.find(key);
        Destination* d = found == destinations.end() ? nullptr : found->second.get();
        if (d) d->starved = false;
        if (!d || !wants_connection(*d)) {
          engine.release_connection_slot();
          continue;
        }
        io::spawn(serve(*d));
        pump(*d);  // more connections, if its jobs want them: it waits again
      }
    }

    void connection_closed(Destination& d) {
      engine.release_connection_slot();
      pump(d);
      // Forgotten once idle, but not from here: the serve() that ended may
      // have run inside a pump() without ever suspending (a DNS failure
      // from the cache fails the destination at once), and that pump()
      // goes on with `d` when it returns.
      if (d.connections == 0 && d.jobs.empty()) loop->post([this, key = d.hop.key()] { forget_if_idle(key); });
    }

    void forget_if_idle(const std::string& key) {
      auto found = destinations.find(key);
      if (found == destinations.end()) return;
      const Destination& d = *found->second;
      if (d.connections == 0 && d.jobs.empty()) destinations.erase(found);
    }

    // One connection's life, on a slot taken or granted: connect to the first
    // host that answers, then carry jobs of this destination until none is
    // left for connection_cache_ms, the per-connection limit is reached or
    // the connection breaks; reconnect while jobs remain.
    io::Task<void> serve(Destination& d) {
      const EngineSettings& settings = engine.settings;
      ++live_tasks;
      ++d.connections;
      ++d.unassigned;
      while (!stopping && !d.jobs.empty()) {
        auto hosts = co_await candidates(d.hop);
        if (!hosts) {
          fail_destination(d, hosts.error());
          break;
        }
        std::unique_ptr<SmtpClient> client;
        std::string relay;
        RouteFailure last{false, "4.4.1", "no host could be reached", true};
        bool all_permanent = true;
        for (const Candidate& c : hosts.value()) {
          ClientTarget target{c.endpoint, c.name, d.hop.tls, d.hop.auth, false};
          auto opened = co_await SmtpClient::open(*loop, target, settings.client);
          if (!opened && opened.error().retry_without_tls) {
            // Policy "may": a failed handshake falls back to plain text (RFC 7435).
            log::event("tls_fallback", {{"destination", d.hop.host}, {"relay", c.name + "[" + c.endpoint.text + "]"},
                                        {"reason", opened.error().text}});
            target.plain_text_only = true;
            opened = co_await SmtpClient::open(*loop, target, settings.client);
          }
          if (opened) {
            client = std::move(opened.value());
            relay = c.name + "[" + c.endpoint.text + "]";
            break;
          }
          const ClientError& e = opened.error();
          log::event("connect_failed", {{"destination", d.hop.host},
                                        {"relay", c.name + "[" + c.endpoint.text + "]"},
                                        {"phase", e.phase},
                                        {"reason", e.text}});
          all_permanent = all_permanent && e.permanent;
          last = RouteFailure{false, e.enhanced, e.text + " (" + c.name + "[" + c.endpoint.text + "])", true};
        }
        if (!client) {
          last.permanent = all_permanent;
          if (!last.permanent) suspend(d.hop, last);
          fail_destination(d, last);
          break;
        }
        unsigned sent = 0;
        for (;;) {
          if (d.jobs.empty()) {
            bool more = co_await wait_for_job(d);
            if (!more) break;
          }
          Job job = std::move(d.jobs.front());
          d.jobs.pop_front();
          if (d.jobs_seen_busy > 0) --d.jobs_seen_busy;
          --d.unassigned;
          co_await deliver(d, *client, relay, std::move(job));
          ++d.unassigned;
          if (stopping || !client->usable() || ++sent >= settings.max_messages_per_connection) break;
        }
        co_await client->quit();
      }
      --d.unassigned;
      --d.connections;
      connection_closed(d);
      --live_tasks;
      end_if_done();
    }

    // Idle: wait for a job up to connection_cache_ms. False when none came.
    io::Task<bool> wait_for_job(Destination& d) {
      const int64_t deadline = wall_clock_us() + engine.settings.connection_cache_ms * 1000;
      while (!stopping && d.jobs.empty()) {
        const int64_t left_ms = (deadline - wall_clock_us()) / 1000;
        if (left_ms <= 0) break;
        auto nap = loop->sleep(left_ms);
        d.idle.push_back(&nap);
        co_await nap;
        // Woken by enqueue() (which removed the nap), by stop, or by the timer.
        std::erase(d.idle, &nap);
      }
      co_return !stopping && !d.jobs.empty();
    }

    // The message's content, read from the spool at its first use. Null
    // when it cannot be read: the job's recipients then wait for a retry.
    io::Task<std::shared_ptr<const std::string>> load_content(const Job& job, const std::string& relay,
                                                              bool encrypted) {
      Message& m = *job.message;
      if (auto kept = m.content()) co_return kept;
      const std::string id = m.envelope.id;
      const uint32_t chunks = m.envelope.body_chunks;
      const uint64_t size = m.envelope.body_size;
      auto read = offload.call(*loop, [this, id, chunks, size] { return engine.spool.read_body(id, chunks, size); });
      Result<std::string> content = co_await read;
      if (!content) {
        finish_job(job, temporary_for(job, "4.3.0", "cannot read the message from the spool: " + content.error()),
                   relay, encrypted, std::nullopt);
        co_return nullptr;
      }
      co_return m.keep_content(std::move(content.value()));
    }

    io::Task<void> deliver(Destination& d, SmtpClient& client, const std::string& relay, Job job) {
      Message& m = *job.message;
      auto loading = load_content(job, relay, client.encrypted());
      const std::shared_ptr<const std::string> content = co_await loading;
      if (!content) co_return;
      const double rate = engine.settings.destination_rate;
      if (rate > 0) {
        const int64_t now = wall_clock_us();
        const int64_t slot = std::max(now, d.next_send_us);
        d.next_send_us = slot + static_cast<int64_t>(1e6 / rate);
        if (slot - now >= 1000) co_await loop->sleep((slot - now) / 1000);
      }
      OutboundMessage outbound{&m.envelope, job.recipients, content.get()};
      std::vector<RecipientOutcome> outcomes = co_await client.send(outbound);
      finish_job(job, outcomes, relay, client.encrypted(),
                 client.capabilities().has("DSN") ? std::nullopt : std::optional(dsn::Action::relayed));
    }

    // The hosts of a destination, best first: its MX hosts (without us) or
    // the relay host's addresses.
    io::Task<Result<std::vector<Candidate>, RouteFailure>> candidates(const NextHop& hop) {
      const EngineSettings& settings = engine.settings;
      std::vector<Candidate> out;
      if (hop.kind == NextHop::Kind::mx) {
        dns::DnsResult<dns::MxRoute> route = co_await resolver->resolve_mx(hop.host);
        if (route) route = dns::drop_ourselves(std::move(route.value()), settings.our_addresses);
        if (!route) {
          const dns::DnsError& e = route.error();
          log::event("mx_lookup_failed", {{"domain", hop.host}, {"reason", e.message}});
          const bool fallback = e.failure != dns::Failure::null_mx && e.failure != dns::Failure::mail_loop;
          co_return RouteFailure{e.permanent(), std::string(e.enhanced_code()), e.message, fallback};
        }
        for (const auto& host : route->hosts) {
          for (const auto& address : host.addresses) {
            if (out.size() == kMaxAddressesPerDestination) break;
            auto endpoint = io::parse_endpoint(endpoint_text(address, settings.smtp_port));
            if (endpoint) out.push_back(Candidate{host.name, std::move(endpoint.value())});
          }
        }
      } else {
        // An address literal in a recipient's domain is reached like an MX host.
        const uint16_t port = hop.via == "mx" ? settings.smtp_port : hop.port;
        dns::DnsResult<std::vector<dns::IpAddress>> addresses = co_await resolver->resolve_addresses(hop.host);
        if (!addresses) {
          const dns::DnsError& e = addresses.error();
          log::event("host_lookup_failed", {{"host", hop.host}, {"reason", e.message}});
          co_return RouteFailure{e.permanent(), std::string(e.enhanced_code()), e.message, false};
        }
        for (const auto& address : addresses.value()) {
          if (out.size() == kMaxAddressesPerDestination) break;
          auto endpoint = io::parse_endpoint(endpoint_text(address, port));
          if (endpoint) out.push_back(Candidate{hop.host, std::move(endpoint.value())});
        }
      }
      if (out.empty()) co_return RouteFailure{true, "5.4.4", "no address to deliver to for " + hop.host, true};
      co_return out;
    }

    // Every job waiting for `d` fails the way its route failed (fail_job).
    void fail_destination(Destination& d, const RouteFailure& failure) {
      std::deque<Job> jobs;
      jobs.swap(d.jobs);
      d.jobs_seen_busy = 0;
      for (auto& job : jobs) fail_job(d.hop, std::move(job), failure);
    }

    // A job for `hop` fails the way its route failed, or goes to the mail
    // router (on the loop that owns it) when direct delivery found no route
    // and there is one.
    void fail_job(const NextHop& hop, Job job, const RouteFailure& failure) {
      if (failure.fallback_allowed && hop.via == "mx") {
        if (std::optional<NextHop> fallback = engine.router.fallback(engine.router_usable)) {
          log::event("fallback", {{"qid", job.message->envelope.id}, {"destination", hop.host},
                                  {"router", fallback->host}, {"reason", failure.text}});
          engine.hand_job(*this, *fallback, std::move(job));
          return;
        }
      }
      std::vector<RecipientOutcome> outcomes;
      for (size_t i : job.recipients) {
        RecipientOutcome o;
        o.recipient = i;
        o.kind = failure.permanent ? RecipientOutcome::Kind::permanent : RecipientOutcome::Kind::temporary;
        o.enhanced = failure.enhanced;
        o.text = failure.text;
        outcomes.push_back(std::move(o));
      }
      finish_job(job, outcomes, "", false, std::nullopt);
    }

    // No host of `hop` answered: its jobs fail at once for a while (from
    // the first of its connections to find that out).
    void suspend(const NextHop& hop, const RouteFailure& failure) {
      const int64_t wait_us = shortest_wait_us(engine.settings.retry);
      if (wait_us <= 0 || suspension_of(hop)) return;
      RouteFailure suspended_failure = failure;
      suspended_failure.text = "delivery temporarily suspended: " + failure.text;
      suspended[hop.key()] = Suspension{wall_clock_us() + wait_us, std::move(suspended_failure)};
      log::event("destination_suspended", {{"destination", hop.host}, {"seconds", wait_us / 1'000'000},
                                           {"reason", failure.text}});
    }

    // Why `hop`'s jobs fail at once now; null when it is not suspended.
    const RouteFailure* suspension_of(const NextHop& hop) {
      if (suspended.empty()) return nullptr;
      auto found = suspended.find(hop.key());
      if (found == suspended.end()) return nullptr;
      if (found->second.until_us <= wall_clock_us()) {
        suspended.erase(found);
        return nullptr;
      }
      return &found->second.failure;
    }

    static std::vector<RecipientOutcome> temporary_for(const Job& job, std::string enhanced, std::string text) {
      std::vector<RecipientOutcome> outcomes;
      for (size_t i : job.recipients)
        outcomes.push_back(RecipientOutcome{i, RecipientOutcome::Kind::temporary, 0, enhanced, text});
      return outcomes;
    }

    // ---- notices (DSNs) ----
    // Queues the notices `events` of `m` call for, each committed like a
    // received message (synced), and logs those that were due but dropped.
    io::Task<void> queue_notices(Message& m, const std::vector<dsn::RecipientEvent>& events) {
      const EngineSettings& settings = engine.settings;
      const std::string id = m.envelope.id;
      std::shared_ptr<const std::string> content = m.content();
      if (!content) {
        auto read = offload.call(*loop, [this, id] { return engine.spool.read_body(id); });
        Result<std::string> loaded = co_await read;
        if (loaded) {
          content = m.keep_content(std::move(loaded.value()));
        } else {
          log::event("spool_error", {{"qid", id}, {"reason", "notice without the message: " + loaded.error()}});
        }
      }
      const int64_t now = wall_clock_us();
      dsn::NoticePlan plan =
          dsn::plan_notices(m.envelope, events, content ? std::string_view(*content) : std::string_view(),
                            settings.notices, now, m.envelope.arrival_us + settings.retry.max_age_us,
                            [] { return queue::new_queue_id(); });
      for (const auto& why : plan.dropped) log::event("dsn_dropped", {{"qid", id}, {"reason", why}});
      for (auto& notice : plan.notices) {
        const std::string notice_id = notice.envelope.id;
        Status st = co_await SpoolAwait{*loop, [&](queue::Spool::Done done) {
                                          engine.spool.commit(notice.envelope, std::move(notice.content),
                                                              std::move(done));
                                        }};
        if (!st) {
          log::event("spool_error", {{"qid", id}, {"reason", "cannot queue a notice: " + st.error()}});
          continue;
        }
        log::event("dsn_queued", {{"qid", id},
                                  {"dsn_qid", notice_id},
                                  {"action", dsn::action_name(notice.action)},
                                  {"audience", dsn::audience_name(notice.audience)},
                                  {"to", notice.envelope.recipients.front().address}});
      }
      if (!plan.notices.empty()) engine.request_scan();
    }

    // ---- settling ----
    // `on_success`: the success notice a delivered recipient gets, if asked
    // (none when the server offered DSN and carries NOTIFY onward). The job
    // that finishes its message's last settles it, on its own loop: the
    // notices and the spool update need nothing of the home loop but the
    // active set, which it is told about afterwards (message_settled).
    void finish_job(const Job& job, const std::vector<RecipientOutcome>& outcomes, const std::string& relay,
                    bool encrypted, std::optional<dsn::Action> on_success) {
      Message& m = *job.message;
      const int64_t now = wall_clock_us();
      {
        std::lock_guard lock(m.outcomes_mutex);
        for (const auto& o : outcomes) {
          record_outcome(m.envelope, o, relay, now);
          if (o.recipient < m.envelope.recipients.size() && o.kind == RecipientOutcome::Kind::delivered)
            m.success_notice[o.recipient] = on_success;
        }
      }
      for (const auto& o : outcomes) {
        if (o.recipient >= m.envelope.recipients.size()) continue;
        log::event(kind_name(o.kind), {{"qid", m.envelope.id},
                                       {"rcpt", m.envelope.recipients[o.recipient].address},
                                       {"relay", relay.empty() ? std::string("none") : relay},
                                       {"tls", encrypted ? "yes" : "no"},
                                       {"code", o.code},
                                       {"dsn", o.enhanced},
                                       {"reply", o.text}});
      }
      // acq_rel: the settling job sees every other job's outcomes.
      if (m.jobs_left.fetch_sub(1, std::memory_order_acq_rel) == 1) io::spawn(settle_message(job.message));
    }

    io::Task<void> settle_message(std::shared_ptr<Message> message) {
      const EngineSettings& settings = engine.settings;
      queue::Spool& spool = engine.spool;
      ++live_tasks;
      queue::Envelope& env = message->envelope;
      const std::string id = env.id;
      const int64_t now = wall_clock_us();
      const Disposition disposition = settle(env, settings.retry, now, message->waiting, rng);
      // The notices go to the spool before the outcome that calls for them:
      // a crash in between means a notice too many, never one missing.
      std::vector<dsn::RecipientEvent> events;
      for (size_t i = 0; i < env.recipients.size(); ++i) {
        queue::Recipient& r = env.recipients[i];
        if (message->states_at_take[i] != queue::RecipientState::pending) continue;
        if (r.state == queue::RecipientState::failed) events.push_back({i, dsn::Action::failed});
        if (r.state == queue::RecipientState::delivered && message->success_notice[i])
          events.push_back({i, *message->success_notice[i]});
        if (disposition.kind == Disposition::Kind::retry && dsn::delay_notice_due(env, r, settings.notices, now)) {
          events.push_back({i, dsn::Action::delayed});
          r.delay_notified_us = now;
        }
      }
      if (!events.empty()) co_await queue_notices(*message, events);
      Status stored;
      switch (disposition.kind) {
        case Disposition::Kind::finished:
        case Disposition::Kind::expired: {
          bool all_delivered = std::all_of(env.recipients.begin(), env.recipients.end(), [](const auto& r) {
            return r.state == queue::RecipientState::delivered;
          });
          const std::string reason = disposition.kind == Disposition::Kind::expired ? "expired"
                                     : all_delivered                               ? "delivered"
                                                                                   : "failed";
          if (disposition.kind == Disposition::Kind::expired) {
            log::event("expired", {{"qid", id}, {"attempts", env.attempts}, {"reason", env.last_error}});
          }
          stored =
              co_await SpoolAwait{*loop, [&](queue::Spool::Done done) { spool.remove(id, reason, std::move(done)); }};
          log::event("finished", {{"qid", id}, {"result", reason}});
          break;
        }
        case Disposition::Kind::retry:
        case Disposition::Kind::hold: {
          stored = co_await SpoolAwait{*loop, [&](queue::Spool::Done done) { spool.update(env, std::move(done)); }};
          const int64_t in_s = (env.next_attempt_us - wall_clock_us()) / 1'000'000;
          log::event(disposition.kind == Disposition::Kind::hold ? "on_hold" : to_string(env.queue),
                     {{"qid", id}, {"attempts", env.attempts}, {"next_attempt_in_s", std::max<int64_t>(in_s, 0)},
                      {"reason", env.last_error}});
          break;
        }
      }
      if (!stored) log::event("spool_error", {{"qid", id}, {"reason", stored.error()}});
      engine.message_settled(*this, id);
      --live_tasks;
      end_if_done();
    }
  };

  Impl(queue::Spool& s, EngineSettings e) : spool(s), settings(std::move(e)), router(settings.routing) {
    for (unsigned i = 0; i < std::max(1u, settings.loops); ++i) shards.push_back(std::make_unique<Shard>(*this, i));
  }

  queue::Spool& spool;
  EngineSettings settings;
  Router router;
  std::vector<std::unique_ptr<Shard>> shards;  // shards[0] is the home loop
  // Written once by the home loop's check_router(), before any job exists.
  std::atomic<bool> router_usable{false};
  // Outbound connections on every loop, at most max_connections: one count
  // for all loops, not a share each (a share would cap a destination at its
  // loop's part of the limit while other loops' slots idle, and could not
  // keep a limit below the number of loops). Destinations that found no
  // slot wait in one queue, first come first served whatever their loop,
  // as they did on one loop: a closing connection hands its slot to the
  // first of them. A connection opens or closes far less often than a
  // message moves, so a mutex costs nothing that shows.
  std::mutex slots_mutex;
  unsigned connections = 0;  // guarded by slots_mutex
  struct SlotWaiter {
    Shard* shard = nullptr;
    std::string destination;  // its key
  };
  std::deque<SlotWaiter> slot_waiters;  // guarded by slots_mutex
  // Set by request_scan() until the home loop has taken the request: a
  // burst of committed messages costs one post, not one each.
  std::atomic<bool> wake_posted{false};
  // in_flight.size(), for other threads (ternctl stats).
  std::atomic<size_t> active_messages{0};
  // shares.put_back_total() and shares.destinations_at_share(), for other threads.
  std::atomic<uint64_t> put_back_messages{0};
  std::atomic<size_t> destinations_at_share{0};
  Handoff<std::string> settled_elsewhere;  // queue IDs settled on other loops: they leave the active set

  // ---- home loop only ----
  // The home loop (shards[0]) keeps what is one for the whole engine: the
  // scanner and the active set, dispatch (routing, held domains), flush,
  // hold and release, bounce and local delivery. Dispatch hands each job
  // to the loop that owns its destination.
  // Replaced on reload (set_local_recipients).
  std::shared_ptr<const local::LocalResolver> local_recipients = settings.local_recipients;
  // Queue IDs taken and not yet settled: the active set, at most
  // settings.active_limit (enter_active, leave_active), each with the next
  // hops it was counted against in `shares` (share_name).
  std::unordered_map<std::string, std::vector<std::string>> in_flight;
  // How much of the active set each next hop holds, at most
  // settings.active_per_destination; a put-back message waits no longer
  // than a deferred one would (the ladder's shortest wait), nor less than
  // a second.
  DestinationShares shares{settings.active_per_destination,
                           std::max<int64_t>(shortest_wait_us(settings.retry), 1'000'000)};
  // The scanner stopped for want of room; leave_active wakes it.
  bool active_full = false;
  // The queue each scan starts with, in turn: with the active set nearly
  // full, incoming mail and retries take the room by turns.
  size_t scan_start = 0;
  std::set<std::string> held_domains;         // ternctl hold-domain; kept in the spool directory
  bool wake_requested = false;
  io::Loop::IoAwaiter* scanner_nap = nullptr;
  // Messages the last scan took whose claim is not written yet (take()).
  size_t claims_pending = 0;

  Shard& home() { return *shards.front(); }

  // The loop that owns a destination: by a hash that does not change
  // between runs, so a destination's place is predictable (tests rely on it).
  Shard& owner(const NextHop& hop) { return *shards[fnv1a64(hop.key()) % shards.size()]; }

  // On loop `from`: `job` joins its destination on the loop that owns it.
  void hand_job(Shard& from, const NextHop& hop, Job job) {
    Shard& to = owner(hop);
    if (&to == &from) {
      to.enqueue(hop, std::move(job));
      return;
    }
    if (to.jobs_in.add(HandedJob{hop, std::move(job)})) to.loop->post([&to] { to.take_handed_jobs(); });
  }

  // On loop `shard`: a slot for one more connection to `d`, if
  // max_connections allows; else `d` waits in line for one (once).
  bool take_connection_slot(Shard& shard, Destination& d) {
    std::lock_guard lock(slots_mutex);
    if (connections < settings.max_connections) {
      ++connections;
      return true;
    }
    if (!d.starved) {
      d.starved = true;
      slot_waiters.push_back({&shard, d.hop.key()});
    }
    return false;
  }

  // Any loop: a connection's slot is free. It passes to the destination
  // that waited longest, on its loop, or goes back to the count.
  void release_connection_slot() {
    SlotWaiter next;
    {
      std::lock_guard lock(slots_mutex);
      if (slot_waiters.empty()) {
        --connections;
        return;
      }
      next = std::move(slot_waiters.front());
      slot_waiters.pop_front();
    }
    Shard& to = *next.shard;
    if (to.slots_in.add(std::move(next.destination))) to.loop->post([&to] { to.take_granted_slots(); });
  }

  // Loop `on` settled message `id`: it leaves the active set, on the home loop.
  void message_settled(Shard& on, const std::string& id) {
    if (&on == &home()) {
      leave_active(id);
      return;
    }
    if (settled_elsewhere.add(id)) home().loop->post([this] {
      for (const std::string& settled : settled_elsewhere.take()) leave_active(settled);
    });
  }

  // Thread-safe: the scanner looks for due mail soon.
  void request_scan() {
    if (wake_posted.exchange(true, std::memory_order_acq_rel)) return;
    home().loop->post([this] {
      wake_posted.store(false, std::memory_order_release);
      wake();
    });
  }

  // ---- lifecycle (thread-safe) ----
  void stop() {
    for (auto& shard : shards) {
      shard->loop->post([this, s = shard.get()] {
        if (s->is_home() && scanner_nap) s->loop->cancel(scanner_nap);
        s->begin_stop();
      });
    }
  }

  bool finished() const {
    return std::all_of(shards.begin(), shards.end(),
                       [](const auto& s) { return s->finished.load(std::memory_order_acquire); });
  }

  // Every loop still running ends now.
  void abandon() {
    for (auto& shard : shards)
      if (shard->thread.joinable()) shard->loop->post([s = shard.get()] { s->loop->stop(); });
  }

  void join() {
    for (auto& shard : shards)
      if (shard->thread.joinable()) shard->thread.join();
  }
  // A message joins the active set, counted against next hops `hops`
  // (admitted by `shares`); false when it is in already.
  bool enter_active(const std::string& id, std::vector<std::string> hops = {}) {
    if (!in_flight.try_emplace(id, std::move(hops)).second) return false;
    active_messages.store(in_flight.size(), std::memory_order_relaxed);
    return true;
  }
  // A message leaves the active set. A full set wakes the scanner once a
  // scan's worth of it is free again (a quarter of it when that is less):
  // one due-scan per settled message would cost a RocksDB seek each, and
  // waiting for much more room keeps fresh mail waiting for it.
  void leave_active(const std::string& id) {
    auto found = in_flight.find(id);
    if (found == in_flight.end()) return;
    if (!found->second.empty()) release_share(found->second);
    in_flight.erase(found);
    active_messages.store(in_flight.size(), std::memory_order_relaxed);
    const size_t refill = std::clamp<size_t>(settings.active_limit / 4, 1, settings.scan_batch);
    const size_t low_water = settings.active_limit - refill;
    if (active_full && in_flight.size() <= low_water) {
      active_full = false;
      wake();
    }
  }

  // A message counted against next hops `hops` left the active set.
  void release_share(const std::vector<std::string>& hops) {
    const DestinationShares::Release released = shares.release(hops, wall_clock_us());
    for (const auto& ended : released.episodes_ended)
      log::event("destination_share_ended", {{"destination", ended.hop}, {"put_back", ended.put_back}});
    destinations_at_share.store(shares.destinations_at_share(), std::memory_order_relaxed);
    if (released.room_for_put_back) wake();
  }

  void wake() {
    wake_requested = true;
    if (scanner_nap) {
      home().loop->cancel(scanner_nap);
      scanner_nap = nullptr;
    }
  }

  // A message to be tried now, and the queue it waits in until then.
  struct DueNow {
    std::string id;
    queue::QueueName queue;
  };

  // A message's new place in the queues and its due time.
  struct Reschedule {
    std::string id;
    queue::QueueName queue;
    int64_t due_us = 0;
  };

  // Makes the messages `items` due now in their queues and wakes the
  // scanner; returns how many moved. Messages being delivered right now are
  // left alone. Mail that waited (a retry, a released destination) stays out
  // of `incoming`: the scanner takes `incoming` and the retry queues by
  // turns, so fresh mail keeps flowing while a released backlog drains,
  // where a backlog put in `incoming` sat in front of every message that
  // arrived after it.
  // The moves go to the spool a window at a time: its writer commits a
  // window together, where awaiting each move alone cost one synced write
  // per message (releasing 20,000 held messages took as long as delivering
  // them, and none left before the last had moved); each window's messages
  // can leave while the next one is moved.
  io::Task<size_t> make_due(const std::vector<DueNow>& items) {
    constexpr size_t kWindow = 1024;
    const int64_t now = wall_clock_us();
    size_t moved = 0;
    for (size_t first = 0; first < items.size(); first += kWindow) {
      std::vector<Reschedule> window;
      for (size_t i = first; i < std::min(items.size(), first + kWindow); ++i) {
        if (!in_flight.contains(items[i].id)) window.push_back({items[i].id, items[i].queue, now});
      }
      if (window.empty()) continue;
      moved += co_await reschedule(window);
      wake();
    }
    co_return moved;
  }

  // Moves `window` together (the spool's writer commits it as one batch);
  // returns how many moved.
  io::Task<size_t> reschedule(const std::vector<Reschedule>& window) {
    co_return co_await io::CallbackAwait<size_t>{*home().loop, [&](std::function<void(size_t)> window_done) {
      // Completions run on the spool's writer thread.
      struct Progress {
        std::atomic<size_t> left;
        std::atomic<size_t> moved{0};
        std::function<void(size_t)> done;
      };
      auto progress = std::make_shared<Progress>();
      progress->left = window.size();
      progress->done = std::move(window_done);
      for (const auto& item : window) {
        spool.move(item.id, item.queue, item.due_us, [progress](Status st) {
          if (st) progress->moved.fetch_add(1);
          if (progress->left.fetch_sub(1) == 1) progress->done(progress->moved.load());
        });
      }
    }};
  }

  // Home loop: every loop forgets its suspended destinations (a flush or a
  // release means "try now", as Postfix's flush revives dead destinations).
  // Posted before the jobs the flush brings, so each loop sees it first.
  void end_suspensions() {
    for (auto& shard : shards) {
      if (shard->is_home()) {
        shard->suspended.clear();
      } else {
        shard->loop->post([s = shard.get()] { s->suspended.clear(); });
      }
    }
  }

  // ---- flush: make matching messages due now ----
  io::Task<void> flush(std::string target, std::function<void(size_t)> done) {
    ++home().live_tasks;
    end_suspensions();
    struct Listing {
      std::vector<DueNow> to_move;
      size_t due_already = 0;  // in incoming and due: the scanner takes them anyway
    };
    auto listing = home().offload.call(*home().loop, [this, target] {
      Listing out;
      const int64_t now = wall_clock_us();
      spool.each([&](const queue::Envelope& env) {
        const bool waiting = env.queue == queue::QueueName::incoming || env.queue == queue::QueueName::retry1 ||
                             env.queue == queue::QueueName::retry2;
        if (!(target.empty() ? waiting : flush_matches(env, target))) return;
        if (env.queue == queue::QueueName::incoming && env.next_attempt_us <= now) {
          ++out.due_already;
        } else {
          out.to_move.push_back({env.id, env.queue});
        }
      });
      return out;
    });
    const Listing found = co_await listing;
    // The answer comes once the messages are found, the moves go on after
    // it (see hold_domain).
    done(found.due_already + std::count_if(found.to_move.begin(), found.to_move.end(),
                                           [&](const DueNow& m) { return !in_flight.contains(m.id); }));
    const size_t moved = found.due_already + co_await make_due(found.to_move);
    log::event("flush", {{"target", target.empty() ? std::string("all") : target}, {"messages", moved}});
    --home().live_tasks;
    home().end_if_done();
  }

  // ---- held destinations ----
  std::string held_domains_path() const { return spool.directory() + "/held-domains"; }

  // One domain a line; read at start (on the engine thread, before the loop
  // runs) and rewritten whole, atomically, on every change.
  void load_held_domains() {
    std::ifstream in(held_domains_path());
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) held_domains.insert(line);
  }

  static Status save_held_domains(const std::string& path, const std::set<std::string>& domains) {
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      for (const auto& d : domains) out << d << "\n";
      out.flush();
      if (!out) return Error{"cannot write " + tmp};
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) return Error{"cannot rename " + tmp + ": " + ec.message()};
    return {};
  }

  // Holds (`hold` true) or releases a destination. Releasing moves the
  // messages held for it to retry1, due now. `done(n)`: messages released,
  // called once they are found: their moves go on after it (the log line
  // `domain_released` comes when all have moved), since moving a backlog of
  // a million takes minutes, longer than an operator's command should wait
  // (ternctl gave up after 60 s while the engine went on).
  io::Task<void> hold_domain(std::string domain, bool hold, std::function<void(Result<size_t>)> done) {
    ++home().live_tasks;
    domain = ascii_lower(domain);
    if (hold) {
      held_domains.insert(domain);
    } else {
      held_domains.erase(domain);
    }
    const std::string path = held_domains_path();
    auto save = home().offload.call(*home().loop, [path, domains = held_domains] { return save_held_domains(path, domains); });
    Status saved = co_await save;
    size_t released = 0;
    if (saved && !hold) {
      end_suspensions();
      auto listing = home().offload.call(*home().loop, [this, domain] {
        // Back as deferred mail (retry1), not as new mail: see make_due().
        std::vector<DueNow> out;
        spool.each([&](const queue::Envelope& env) {
          if (!held_for_destination(env)) return;
          for (const auto& r : env.recipients) {
            if (r.state == queue::RecipientState::pending && domain_of(r.address) == domain) {
              out.push_back({env.id, queue::QueueName::retry1});
              return;
            }
          }
        });
        return out;
      });
      const std::vector<DueNow> ids = co_await listing;
      done(ids.size());  // held mail is never in the active set: each of them moves
      released = co_await make_due(ids);
    } else if (saved) {
      done(size_t{0});
    } else {
      done(Error{saved.error()});
    }
    log::event(hold ? "domain_held" : "domain_released", {{"domain", domain}, {"released", released}});
    --home().live_tasks;
    home().end_if_done();
  }

  // ---- scanner: due messages → active → jobs ----
  // Where a message's pending recipients go: grouped by next hop, local,
  // or waiting for a held destination. Worked out when the scanner finds
  // the message (its next hops decide whether it is admitted) and used
  // when it is dispatched.
  struct Routes {
    std::vector<std::pair<NextHop, std::vector<size_t>>> remote;  // distinct hops
    std::vector<size_t> local;
    Waiting waiting;
  };

  io::Task<void> scanner() {
    ++home().live_tasks;
    co_await check_router();
    while (!home().stopping) {
      co_await scan_once();
      // Until its claims are written, what this scan took is still in its
      // old queue: a scan before then would read it again, only to find it
      // in the active set. (New mail meanwhile wakes the nap, not the scan.)
      while (claims_pending > 0 && !home().stopping) {
        auto nap = home().loop->sleep(settings.scan_interval_ms);
        scanner_nap = &nap;
        co_await nap;
        scanner_nap = nullptr;
      }
      if (home().stopping) break;
      if (!wake_requested) {
        auto nap = home().loop->sleep(settings.scan_interval_ms);
        scanner_nap = &nap;
        co_await nap;
        scanner_nap = nullptr;
      }
      wake_requested = false;
    }
    --home().live_tasks;
    home().end_if_done();
  }

  // The old system ran without its mail router when the name did not
  // resolve at start, and said so; so do we.
  io::Task<void> check_router() {
    const auto& hop = settings.routing.router;
    if (!hop) co_return;
    auto addresses = co_await home().resolver->resolve_addresses(hop->host);
    router_usable = addresses.ok();
    if (addresses.ok()) {
      log::event("router_ready", {{"router", hop->host}, {"port", hop->port}});
    } else {
      log::event("router_unavailable", {{"router", hop->host}, {"reason", addresses.error().message}});
    }
  }

  // Takes due mail into the active set, as much as it has room for.
  io::Task<void> scan_once() {
    static constexpr queue::QueueName kQueues[] = {queue::QueueName::incoming, queue::QueueName::retry1,
                                                   queue::QueueName::retry2};
    const int64_t now = wall_clock_us();
    const size_t start = scan_start;
    scan_start = (scan_start + 1) % std::size(kQueues);
    for (size_t i = 0; i < std::size(kQueues); ++i) {
      const queue::QueueName q = kQueues[(start + i) % std::size(kQueues)];
      if (in_flight.size() >= settings.active_limit) {
        active_full = true;
        co_return;
      }
      // Mail put back (its destination holds its share) is due later than
      // `now`, so each read goes past what the last one put back; the turn
      // ends when the queue has nothing more due, or after putting back a
      // scan batch (then the next scan comes at once, starting with the next
      // queue).
      size_t put_back_this_turn = 0;
      for (;;) {
        if (in_flight.size() >= settings.active_limit) {
          active_full = true;
          co_return;
        }
        const size_t limit = std::min(settings.scan_batch, settings.active_limit - in_flight.size());
        auto read_due = home().offload.call(*home().loop, [this, q, now, limit] { return spool.due(q, now, limit); });
        std::vector<queue::Envelope> due = co_await read_due;
        std::vector<Reschedule> put_back;
        std::vector<queue::Envelope> admitted;
        std::vector<Routes> admitted_routes;
        for (queue::Envelope& envelope : due) {
          if (home().stopping) break;  // what is admitted already is taken below (take() sees the stop)
          if (in_flight.contains(envelope.id)) continue;
          Routes routes = route_recipients(envelope);
          std::vector<std::string> hops;  // none without a share to count them against
          if (settings.active_per_destination > 0)
            for (const auto& [hop, indices] : routes.remote) hops.push_back(share_name(hop));
          const DestinationShares::Admission admission = shares.admit(hops, now);
          for (size_t i : admission.episodes_begun)
            log::event("destination_at_share", {{"destination", hops[i]},
                                                {"share", settings.active_per_destination},
                                                {"next_in_ms", (admission.due_us - now) / 1000}});
          if (!admission.admitted) {
            put_back.push_back({envelope.id, q, admission.due_us});
            continue;
          }
          enter_active(envelope.id, std::move(hops));
          ++claims_pending;
          admitted.push_back(std::move(envelope));
          admitted_routes.push_back(std::move(routes));
        }
        if (!admitted.empty()) {
          // Small contents come with the admitted mail, in one call for the
          // batch (not for the mail put back: with one destination's large
          // backlog that is most of what a scan reads).
          auto read_contents = home().offload.call(*home().loop, [this, &admitted] {
            return spool.read_small_bodies(admitted, kContentReadAtScan);
          });
          std::vector<std::optional<std::string>> contents = co_await read_contents;
          for (size_t k = 0; k < admitted.size(); ++k)
            io::spawn(take(std::move(admitted[k]), std::move(admitted_routes[k]), std::move(contents[k])));
        }
        if (home().stopping) co_return;
        if (put_back.empty()) break;
        put_back_messages.store(shares.put_back_total(), std::memory_order_relaxed);
        destinations_at_share.store(shares.destinations_at_share(), std::memory_order_relaxed);
        co_await reschedule(put_back);
        if (home().stopping) co_return;
        put_back_this_turn += put_back.size();
        if (due.size() < limit) break;
        // One scan batch put back ends the turn: the next queue's mail
        // (fresh mail in incoming) waits for no more than that.
        if (put_back_this_turn >= settings.scan_batch) {
          wake_requested = true;
          break;
        }
      }
    }
    // Filled to the brim by this scan: the next one waits for room
    // (leave_active), not for the scan interval.
    if (in_flight.size() >= settings.active_limit) active_full = true;
  }

  // `content`: read at the scan, or nullopt (read at its first use).
  io::Task<void> take(queue::Envelope envelope, Routes routes, std::optional<std::string> content) {
    ++home().live_tasks;
    const std::string id = envelope.id;
    Status claimed = co_await SpoolAwait{*home().loop, [&](queue::Spool::Done done) { spool.claim(id, std::move(done)); }};
    // The scanner waits for the last claim of its scan.
    if (--claims_pending == 0 && scanner_nap) {
      home().loop->cancel(scanner_nap);
      scanner_nap = nullptr;
    }
    if (!claimed) {
      log::event("take_failed", {{"qid", id}, {"reason", claimed.error()}});
      leave_active(id);
    } else if (!home().stopping) {
      auto message = message_of(std::move(envelope));
      if (content) message->keep_content(std::move(*content));
      message->envelope.queue = queue::QueueName::active;
      if (message->taken_from != queue::QueueName::incoming)
        log::event("retry_ready", {{"qid", id}, {"queue", to_string(message->taken_from)}});
      log::event("taken", {{"qid", id}, {"queue", to_string(message->taken_from)},
                           {"attempts", message->envelope.attempts}});
      dispatch(std::move(message), std::move(routes));
    }
    --home().live_tasks;
    home().end_if_done();
  }

  // A next hop as the shares count it, and as it is logged: the MX domain,
  // or a relay's host and port (TLS policy and credentials, which keep
  // destinations apart in their queues, do not make another remote host;
  // and a hop's key holds a password, never logged).
  static std::string share_name(const NextHop& hop) {
    return hop.kind == NextHop::Kind::mx ? hop.host : concat({hop.host, ":", std::to_string(hop.port)});
  }

  Routes route_recipients(const queue::Envelope& envelope) const {
    Routes routes;
    const auto& recipients = envelope.recipients;
    for (size_t i = 0; i < recipients.size(); ++i) {
      if (recipients[i].state != queue::RecipientState::pending) continue;
      const std::string domain = domain_of(recipients[i].address);
      if (held_domains.contains(domain)) {
        ++routes.waiting.count;
        routes.waiting.reason = held_destination_reason(domain);
        continue;
      }
      NextHop hop = router.route(recipients[i].address, router_usable);
      if (hop.kind == NextHop::Kind::local) {
        routes.local.push_back(i);
        continue;
      }
      auto& groups = routes.remote;
      auto same = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first.key() == hop.key(); });
      if (same == groups.end()) {
        groups.emplace_back(std::move(hop), std::vector<size_t>{i});
      } else {
        same->second.push_back(i);
      }
    }
    return routes;
  }

  // One job per next hop, handed to the loop that owns the hop; local
  // recipients delivered here.
  void dispatch(std::shared_ptr<Message> message, Routes routes) {
    message->waiting = std::move(routes.waiting);
    auto& groups = routes.remote;
    std::vector<size_t>& local_indices = routes.local;
    message->jobs_left = static_cast<unsigned>(groups.size()) + (local_indices.empty() ? 0 : 1);
    if (message->jobs_left == 0) {
      io::spawn(home().settle_message(std::move(message)));
      return;
    }
    if (!local_indices.empty()) io::spawn(deliver_local(message, std::move(local_indices)));
    for (auto& [hop, indices] : groups) hand_job(home(), hop, Job{message, std::move(indices)});
  }

  // ---- local delivery ----
  // The local recipients of a message: each resolved (users, aliases,
  // catch-all, plus-addressing) and written into its Maildirs on the
  // offload thread; alias targets elsewhere are forwarded as a new message.
  io::Task<void> deliver_local(std::shared_ptr<Message> message, std::vector<size_t> indices) {
    ++home().live_tasks;
    Message& m = *message;
    Job job{message, indices};
    auto loading = home().load_content(job, "local", false);
    const std::shared_ptr<const std::string> content = co_await loading;
    if (!content) {
      --home().live_tasks;
      home().end_if_done();
      co_return;
    }
    std::vector<RecipientOutcome> outcomes;
    for (size_t i : indices) {
      const std::string address = m.envelope.recipients[i].address;
      auto delivery = deliver_one_local(m, content, i, address);
      RecipientOutcome outcome = co_await delivery;
      outcomes.push_back(std::move(outcome));
    }
    home().finish_job(job, outcomes, "local", false, std::optional(dsn::Action::delivered));
    --home().live_tasks;
    home().end_if_done();
  }

  io::Task<RecipientOutcome> deliver_one_local(Message& m, std::shared_ptr<const std::string> content, size_t index,
                                               std::string address) {
    using Kind = RecipientOutcome::Kind;
    const local::Resolution who = local_recipients->resolve(address);
    if (!who.known) {
      const bool loop_found = who.error == local::kAliasLoop;
      co_return RecipientOutcome{index, Kind::permanent, 550, loop_found ? "5.4.6" : "5.1.1",
                                 loop_found ? "alias expansion loop" : "no such user here"};
    }
    // A message that already went through this mailbox is looping.
    if (local::delivered_to_present(*content, address))
      co_return RecipientOutcome{index, Kind::permanent, 554, "5.4.6", "mail forwarding loop for " + address};

    std::vector<std::string> mailboxes, forward;
    for (const auto& target : who.targets)
      (target.kind == local::LocalTarget::Kind::mailbox ? mailboxes : forward).push_back(target.value);
    const std::string prefix = concat({"Return-Path: <", m.envelope.sender, ">\r\nDelivered-To: ", address, "\r\n"});
    const LocalSettings& ls = settings.local;
    auto write = home().offload.call(*home().loop, [&ls, mailboxes, prefix, content, host = settings.client.helo_name] {
      std::vector<local::MaildirResult> results;
      for (const auto& user : mailboxes)
        results.push_back(
            local::deliver_to_maildir(ls.maildir_root, user, prefix, *content, ls.quota_of(user), host));
      return results;
    });
    const std::vector<local::MaildirResult> results = co_await write;
    // A mailbox that could not take its copy while others of the same
    // recipient did: that copy goes on as a message of its own (to
    // user@domain, which resolves to the user), so a retry never writes the
    // delivered copies again. When no copy was written, the recipient
    // itself waits or fails.
    size_t written = 0;
    std::optional<RecipientOutcome> failure;
    std::vector<std::string> requeue;
    const std::string domain = address.substr(address.rfind('@') + 1);
    for (size_t k = 0; k < results.size(); ++k) {
      const local::MaildirResult& r = results[k];
      if (r.kind == local::MaildirResult::Kind::delivered) {
        ++written;
        log::event("maildir", {{"qid", m.envelope.id}, {"rcpt", address}, {"user", mailboxes[k]}, {"file", r.path}});
        continue;
      }
      requeue.push_back(concat({mailboxes[k], "@", domain}));
      if (failure) continue;
      if (r.kind == local::MaildirResult::Kind::over_quota) {
        // A message larger than the whole quota would wait in vain.
        const bool never_fits = content->size() > ls.quota_of(mailboxes[k]);
        failure = ls.quota_permanent || never_fits
                      ? RecipientOutcome{index, Kind::permanent, 552, "5.2.2", "mailbox of " + mailboxes[k] + " is full"}
                      : RecipientOutcome{index, Kind::temporary, 452, "4.2.2", "mailbox of " + mailboxes[k] + " is full"};
      } else {
        failure = RecipientOutcome{index, Kind::temporary, 451, "4.3.0", "mailbox " + mailboxes[k] + ": " + r.error};
      }
    }
    if (failure && written == 0 && forward.empty()) co_return *failure;
    if (failure) forward.insert(forward.end(), requeue.begin(), requeue.end());
    if (!forward.empty()) {
      auto forwarded = forward_message(m, *content, index, address, forward);
      Status st = co_await forwarded;
      if (!st) co_return RecipientOutcome{index, Kind::temporary, 451, "4.3.0", "cannot forward: " + st.error()};
    }
    std::string text = "delivered";
    if (written > 0) text += " to " + std::to_string(written) + " mailbox(es)";
    if (!forward.empty()) text += ", passed on to " + std::to_string(forward.size()) + " address(es)";
    co_return RecipientOutcome{index, Kind::delivered, 250, "2.0.0", text};
  }

  // An alias pointing elsewhere: a new message from the same sender to the
  // targets, marked Delivered-To the alias (loop protection), queued like
  // any other (synced) and delivered by this engine.
  io::Task<Status> forward_message(Message& m, const std::string& content, size_t index, const std::string& alias,
                                   const std::vector<std::string>& targets) {
    queue::Envelope e;
    e.id = queue::new_queue_id();
    e.sender = m.envelope.sender;
    e.body_type = m.envelope.body_type;
    e.smtputf8 = m.envelope.smtputf8;
    e.ret = m.envelope.ret;
    e.envid = m.envelope.envid;
    for (const auto& t : targets) {
      queue::Recipient r;
      r.address = t;
      r.notify = m.envelope.recipients[index].notify;
      e.recipients.push_back(std::move(r));
    }
    const int64_t now = wall_clock_us();
    e.arrival_us = now;
    e.protocol = "local";
    e.message_id = m.envelope.message_id;
    std::string body = concat({"Delivered-To: ", alias, "\r\n", content});
    e.body_size = body.size();
    e.body_chunks = 1;
    e.queue = queue::QueueName::incoming;
    e.next_attempt_us = now;
    const std::string new_id = e.id;
    Status st = co_await SpoolAwait{*home().loop, [&](queue::Spool::Done done) {
                                      spool.commit(std::move(e), std::move(body), std::move(done));
                                    }};
    if (st) {
      log::event("forwarded", {{"qid", m.envelope.id}, {"rcpt", alias}, {"new_qid", new_id},
                               {"to", std::to_string(targets.size()) + " address(es)"}});
      wake();
    }
    co_return st;
  }

  // ---- ternctl bounce ----
  io::Task<void> bounce(std::string id, std::vector<std::string> names, std::function<void(Result<size_t>)> done) {
    ++home().live_tasks;
    Result<size_t> result = co_await bounce_message(id, names);
    done(std::move(result));
    --home().live_tasks;
    home().end_if_done();
  }

  io::Task<Result<size_t>> bounce_message(const std::string& id, const std::vector<std::string>& names) {
    if (!enter_active(id)) co_return Error{"message " + id + " is being delivered; try again shortly"};
    auto read = home().offload.call(*home().loop, [this, id] { return spool.get(id); });
    std::optional<queue::Envelope> found = co_await read;
    // Not co_await inside ?: (g++ 12 miscompiles co_await in conditional expressions).
    Result<size_t> result = Error{"no message " + id};
    if (found) {
      auto bounced = bounce_found(message_of(std::move(*found)), names);
      result = co_await bounced;
    }
    leave_active(id);
    co_return result;
  }

  io::Task<Result<size_t>> bounce_found(std::shared_ptr<Message> message, const std::vector<std::string>& names) {
    queue::Envelope& env = message->envelope;
    for (const auto& name : names) {
      const bool known = std::any_of(env.recipients.begin(), env.recipients.end(), [&](const auto& r) {
        return r.state == queue::RecipientState::pending && ascii_iequals(r.address, name);
      });
      if (!known) co_return Error{"not a pending recipient of " + env.id + ": " + name};
    }
    std::vector<dsn::RecipientEvent> events;
    const int64_t now = wall_clock_us();
    for (size_t i = 0; i < env.recipients.size(); ++i) {
      queue::Recipient& r = env.recipients[i];
      if (r.state != queue::RecipientState::pending) continue;
      if (!names.empty() &&
          std::none_of(names.begin(), names.end(), [&](const auto& n) { return ascii_iequals(r.address, n); }))
        continue;
      r.state = queue::RecipientState::failed;
      r.status = "5.0.0";
      r.last_error = "5.0.0 deleted by the administrator";
      r.diagnostic.clear();  // the administrator's decision, not a remote reply
      r.remote_mta.clear();
      r.last_attempt_us = now;
      events.push_back({i, dsn::Action::failed});
      log::event("bounced", {{"qid", env.id}, {"rcpt", r.address}, {"reason", r.last_error}});
    }
    if (events.empty()) co_return Error{"message " + env.id + " has no pending recipient"};
    co_await home().queue_notices(*message, events);
    const std::string id = env.id;
    Status stored;
    if (has_pending(env)) {
      stored = co_await SpoolAwait{*home().loop, [&](queue::Spool::Done d) { spool.update(env, std::move(d)); }};
    } else {
      stored = co_await SpoolAwait{*home().loop, [&](queue::Spool::Done d) { spool.remove(id, "bounced", std::move(d)); }};
      if (stored) log::event("finished", {{"qid", id}, {"result", "bounced"}});
    }
    if (!stored) co_return Error{"spool: " + stored.error()};
    co_return events.size();
  }

};

uint64_t LocalSettings::quota_of(std::string_view user) const {
  for (const auto& [name, bytes] : user_quotas)
    if (name == user) return bytes;
  return quota;
}

Result<std::unique_ptr<DeliveryEngine>> DeliveryEngine::start(queue::Spool& spool, EngineSettings settings) {
  auto impl = std::make_unique<Impl>(spool, std::move(settings));
  // The home loop starts last: its scanner hands jobs to the others at once.
  for (size_t i = impl->shards.size(); i-- > 0;) {
    Status started = impl->shards[i]->start();
    if (!started) {
      impl->abandon();
      impl->join();
      return Error{started.error()};
    }
  }
  return std::unique_ptr<DeliveryEngine>(new DeliveryEngine(std::move(impl)));
}

DeliveryEngine::DeliveryEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DeliveryEngine::~DeliveryEngine() {
  stop();
  impl_->join();
}

void DeliveryEngine::wake() { impl_->request_scan(); }

void DeliveryEngine::stop() { impl_->stop(); }

void DeliveryEngine::flush(std::string target, std::function<void(size_t)> done) {
  Impl* impl = impl_.get();
  impl->home().loop->post([impl, target = std::move(target), done = std::move(done)]() mutable {
    if (impl->home().stopping) {
      done(0);
      return;
    }
    io::spawn(impl->flush(std::move(target), std::move(done)));
  });
}

void DeliveryEngine::bounce(std::string id, std::vector<std::string> recipients,
                            std::function<void(Result<size_t>)> done) {
  Impl* impl = impl_.get();
  impl->home().loop->post(
      [impl, id = std::move(id), recipients = std::move(recipients), done = std::move(done)]() mutable {
        if (impl->home().stopping) {
          done(Error{"ternd is stopping"});
          return;
        }
        io::spawn(impl->bounce(std::move(id), std::move(recipients), std::move(done)));
      });
}

void DeliveryEngine::set_local_recipients(std::shared_ptr<const local::LocalResolver> resolver) {
  Impl* impl = impl_.get();
  impl->home().loop->post(
      [impl, resolver = std::move(resolver)]() mutable { impl->local_recipients = std::move(resolver); });
}

size_t DeliveryEngine::active_messages() const {
  return impl_->active_messages.load(std::memory_order_relaxed);
}

uint64_t DeliveryEngine::put_back_messages() const {
  return impl_->put_back_messages.load(std::memory_order_relaxed);
}

size_t DeliveryEngine::destinations_at_share() const {
  return impl_->destinations_at_share.load(std::memory_order_relaxed);
}

void DeliveryEngine::hold_domain(std::string domain, bool hold, std::function<void(Result<size_t>)> done) {
  Impl* impl = impl_.get();
  impl->home().loop->post([impl, domain = std::move(domain), hold, done = std::move(done)]() mutable {
    if (impl->home().stopping) {
      done(Error{"ternd is stopping"});
      return;
    }
    io::spawn(impl->hold_domain(std::move(domain), hold, std::move(done)));
  });
}

bool DeliveryEngine::finished() const { return impl_->finished(); }

void DeliveryEngine::abandon() { impl_->abandon(); }

}  // namespace tern::delivery
