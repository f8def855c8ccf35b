#include "mta/delivery/delivery_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <set>
#include <fstream>
#include <filesystem>

#include "dns/route.h"
#include "mta/clock.h"
#include "mta/delivery/attempt_outcome.h"
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

struct Message {
  queue::Envelope envelope;
  queue::QueueName taken_from = queue::QueueName::incoming;
  std::optional<std::string> content;  // read from the spool at the first send
  unsigned jobs_left = 0;
  Waiting waiting;  // pending recipients not tried: local, or a held destination
  // Each recipient's state when the message was taken: what changed is
  // what this attempt decided, and what the notices report.
  std::vector<queue::RecipientState> states_at_take;
  // What a NOTIFY=SUCCESS recipient hears once delivered (RFC 3461 §4.3):
  // "relayed" when a server without DSN took it, "delivered" when it went
  // into a local mailbox, nothing when a DSN-capable server carries the
  // request onward.
  std::vector<std::optional<dsn::Action>> success_notice;
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
  bool starved = false;                    // in the list waiting for a free connection slot
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
  Impl(queue::Spool& s, EngineSettings e) : spool(s), settings(std::move(e)), router(settings.routing) {}

  queue::Spool& spool;
  EngineSettings settings;
  Router router;
  // Replaced on reload (set_local_recipients); loop thread only.
  std::shared_ptr<const local::LocalResolver> local_recipients = settings.local_recipients;
  bool router_usable = false;
  std::unique_ptr<io::Loop> loop;
  std::unique_ptr<dns::Resolver> resolver;
  // Spool reads, local delivery and the held-domains file.
  io::OffloadThread offload{"tern-deliver-io"};
  std::thread thread;
  std::mt19937_64 rng{std::random_device{}()};
  // Set by wake() until the loop has taken the request: a burst of committed
  // messages costs one post, not one each.
  std::atomic<bool> wake_posted{false};
  std::atomic<bool> finished{false};  // the loop has ended

  // in_flight.size(), for other threads (ternctl stats).
  std::atomic<size_t> active_messages{0};

  // ---- loop thread only ----
  // Queue IDs taken and not yet settled: the active set, at most
  // settings.active_limit (enter_active, leave_active).
  std::unordered_set<std::string> in_flight;
  // The scanner stopped for want of room; leave_active wakes it.
  bool active_full = false;
  // The queue each scan starts with, in turn: with the active set nearly
  // full, incoming mail and retries take the room by turns.
  size_t scan_start = 0;
  std::set<std::string> held_domains;         // ternctl hold-domain; kept in the spool directory
  std::unordered_map<std::string, std::unique_ptr<Destination>> destinations;
  std::deque<Destination*> starved;  // destinations waiting for a connection slot
  unsigned connections = 0;
  unsigned live_tasks = 0;
  bool stopping = false;
  bool wake_requested = false;
  io::Loop::IoAwaiter* scanner_nap = nullptr;

  void run(std::promise<Status>* ready) {
    auto created = io::Loop::create();
    if (!created) {
      ready->set_value(Error{"delivery loop: " + created.error()});
      return;
    }
    loop = std::move(created.value());
    auto dns = dns::Resolver::create(*loop, settings.dns);
    if (!dns) {
      ready->set_value(Error{"dns: " + dns.error()});
      return;
    }
    resolver = std::move(dns.value());
    load_held_domains();
    ready->set_value(Status{});  // `ready` dies with start(); not touched after this
    io::spawn(scanner());
    loop->run();
    finished.store(true, std::memory_order_release);
  }

  // ---- lifecycle ----
  void begin_stop() {
    if (stopping) return;
    stopping = true;
    if (scanner_nap) loop->cancel(scanner_nap);
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

  // A message joins the active set; false when it is in already.
  bool enter_active(const std::string& id) {
    if (!in_flight.insert(id).second) return false;
    active_messages.store(in_flight.size(), std::memory_order_relaxed);
    return true;
  }
  // A message leaves the active set. A full set wakes the scanner once a
  // scan's worth of it is free again (a quarter of it when that is less):
  // one due-scan per settled message would cost a RocksDB seek each, and
  // waiting for much more room keeps fresh mail waiting for it.
  void leave_active(const std::string& id) {
    if (in_flight.erase(id) == 0) return;
    active_messages.store(in_flight.size(), std::memory_order_relaxed);
    const size_t refill = std::clamp<size_t>(settings.active_limit / 4, 1, settings.scan_batch);
    const size_t low_water = settings.active_limit - refill;
    if (active_full && in_flight.size() <= low_water) {
      active_full = false;
      wake();
    }
  }

  void wake() {
    wake_requested = true;
    if (scanner_nap) {
      loop->cancel(scanner_nap);
      scanner_nap = nullptr;
    }
  }

  // A message to be tried now, and the queue it waits in until then.
  struct DueNow {
    std::string id;
    queue::QueueName queue;
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
      std::vector<DueNow> window;
      for (size_t i = first; i < std::min(items.size(), first + kWindow); ++i) {
        if (!in_flight.contains(items[i].id)) window.push_back(items[i]);
      }
      if (window.empty()) continue;
      moved += co_await io::CallbackAwait<size_t>{*loop, [&](std::function<void(size_t)> window_done) {
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
          spool.move(item.id, item.queue, now, [progress](Status st) {
            if (st) progress->moved.fetch_add(1);
            if (progress->left.fetch_sub(1) == 1) progress->done(progress->moved.load());
          });
        }
      }};
      wake();
    }
    co_return moved;
  }

  // ---- flush: make matching messages due now ----
  io::Task<void> flush(std::string target, std::function<void(size_t)> done) {
    ++live_tasks;
    struct Listing {
      std::vector<DueNow> to_move;
      size_t due_already = 0;  // in incoming and due: the scanner takes them anyway
    };
    auto listing = offload.call(*loop, [this, target] {
      Listing out;
      const int64_t now = wall_clock_us();
      for (const auto& env : spool.list()) {
        const bool waiting = env.queue == queue::QueueName::incoming || env.queue == queue::QueueName::retry1 ||
                             env.queue == queue::QueueName::retry2;
        if (!(target.empty() ? waiting : flush_matches(env, target))) continue;
        if (env.queue == queue::QueueName::incoming && env.next_attempt_us <= now) {
          ++out.due_already;
        } else {
          out.to_move.push_back({env.id, env.queue});
        }
      }
      return out;
    });
    const Listing found = co_await listing;
    const size_t moved = found.due_already + co_await make_due(found.to_move);
    log::event("flush", {{"target", target.empty() ? std::string("all") : target}, {"messages", moved}});
    done(moved);
    --live_tasks;
    end_if_done();
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
  // messages held for it back to incoming. `done(n)`: messages released.
  io::Task<void> hold_domain(std::string domain, bool hold, std::function<void(Result<size_t>)> done) {
    ++live_tasks;
    domain = ascii_lower(domain);
    if (hold) {
      held_domains.insert(domain);
    } else {
      held_domains.erase(domain);
    }
    const std::string path = held_domains_path();
    auto save = offload.call(*loop, [path, domains = held_domains] { return save_held_domains(path, domains); });
    Status saved = co_await save;
    size_t released = 0;
    if (saved && !hold) {
      auto listing = offload.call(*loop, [this, domain] {
        // Back as deferred mail (retry1), not as new mail: see make_due().
        std::vector<DueNow> out;
        for (const auto& env : spool.list()) {
          if (!held_for_destination(env)) continue;
          for (const auto& r : env.recipients) {
            if (r.state == queue::RecipientState::pending && domain_of(r.address) == domain) {
              out.push_back({env.id, queue::QueueName::retry1});
              break;
            }
          }
        }
        return out;
      });
      const std::vector<DueNow> ids = co_await listing;
      released = co_await make_due(ids);
    }
    log::event(hold ? "domain_held" : "domain_released", {{"domain", domain}, {"released", released}});
    if (saved) {
      done(released);
    } else {
      done(Error{saved.error()});
    }
    --live_tasks;
    end_if_done();
  }

  // ---- scanner: due messages → active → jobs ----
  io::Task<void> scanner() {
    ++live_tasks;
    co_await check_router();
    while (!stopping) {
      co_await scan_once();
      if (stopping) break;
      if (!wake_requested) {
        auto nap = loop->sleep(settings.scan_interval_ms);
        scanner_nap = &nap;
        co_await nap;
        scanner_nap = nullptr;
      }
      wake_requested = false;
    }
    --live_tasks;
    end_if_done();
  }

  // The old system ran without its mail router when the name did not
  // resolve at start, and said so; so do we.
  io::Task<void> check_router() {
    const auto& hop = settings.routing.router;
    if (!hop) co_return;
    auto addresses = co_await resolver->resolve_addresses(hop->host);
    router_usable = addresses.ok();
    if (router_usable) {
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
      const size_t limit = std::min(settings.scan_batch, settings.active_limit - in_flight.size());
      auto read_due = offload.call(*loop, [this, q, now, limit] { return spool.due(q, now, limit); });
      std::vector<queue::Envelope> due = co_await read_due;
      for (auto& envelope : due) {
        if (stopping) co_return;
        if (!enter_active(envelope.id)) continue;
        io::spawn(take(std::move(envelope)));
      }
    }
  }

  io::Task<void> take(queue::Envelope envelope) {
    ++live_tasks;
    const std::string id = envelope.id;
    Status claimed = co_await SpoolAwait{*loop, [&](queue::Spool::Done done) { spool.claim(id, std::move(done)); }};
    if (!claimed) {
      log::event("take_failed", {{"qid", id}, {"reason", claimed.error()}});
      leave_active(id);
    } else if (!stopping) {
      auto message = message_of(std::move(envelope));
      message->envelope.queue = queue::QueueName::active;
      if (message->taken_from != queue::QueueName::incoming)
        log::event("retry_ready", {{"qid", id}, {"queue", to_string(message->taken_from)}});
      log::event("taken", {{"qid", id}, {"queue", to_string(message->taken_from)},
                           {"attempts", message->envelope.attempts}});
      dispatch(std::move(message));
    }
    --live_tasks;
    end_if_done();
  }

  // Groups the pending recipients by next hop: one job per hop.
  void dispatch(std::shared_ptr<Message> message) {
    std::vector<std::pair<NextHop, std::vector<size_t>>> groups;
    std::vector<size_t> local_indices;
    const auto& recipients = message->envelope.recipients;
    for (size_t i = 0; i < recipients.size(); ++i) {
      if (recipients[i].state != queue::RecipientState::pending) continue;
      const std::string domain = domain_of(recipients[i].address);
      if (held_domains.contains(domain)) {
        ++message->waiting.count;
        message->waiting.reason = held_destination_reason(domain);
        continue;
      }
      NextHop hop = router.route(recipients[i].address, router_usable);
      if (hop.kind == NextHop::Kind::local) {
        local_indices.push_back(i);
        continue;
      }
      auto same = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first.key() == hop.key(); });
      if (same == groups.end()) {
        groups.emplace_back(std::move(hop), std::vector<size_t>{i});
      } else {
        same->second.push_back(i);
      }
    }
    message->jobs_left = static_cast<unsigned>(groups.size()) + (local_indices.empty() ? 0 : 1);
    if (message->jobs_left == 0) {
      io::spawn(settle_message(std::move(message)));
      return;
    }
    if (!local_indices.empty()) io::spawn(deliver_local(message, std::move(local_indices)));
    for (auto& [hop, indices] : groups) enqueue(hop, Job{message, std::move(indices)});
  }

  // ---- destinations ----
  Destination& destination(const NextHop& hop) {
    auto& slot = destinations[hop.key()];
    if (!slot) {
      slot = std::make_unique<Destination>();
      slot->hop = hop;
    }
    return *slot;
  }

  void enqueue(const NextHop& hop, Job job) {
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
    while (!stopping && d.jobs.size() > d.unassigned && d.connections < settings.max_per_destination &&
           connections < settings.max_connections) {
      io::spawn(serve(d));
    }
    if (stopping || d.jobs.size() <= d.unassigned) return;
    if (connections >= settings.max_connections && !d.starved) {
      d.starved = true;
      starved.push_back(&d);
    }
    for (; d.jobs_seen_busy < d.jobs.size(); ++d.jobs_seen_busy) {
      Job& job = d.jobs[d.jobs_seen_busy];
      // A job moved here from another destination (fallback) may be logged already.
      if (job.busy_logged) continue;
      job.busy_logged = true;
      log::event("resource_busy", {{"qid", job.message->envelope.id},
                                   {"destination", d.hop.host},
                                   {"limit", connections >= settings.max_connections ? "max_connections"
                                                                                      : "max_per_destination"}});
    }
  }

  void connection_closed(Destination& d) {
    std::deque<Destination*> waiting;
    waiting.swap(starved);
    for (Destination* s : waiting) {
      s->starved = false;
      pump(*s);
    }
    pump(d);
    if (d.connections == 0 && d.jobs.empty()) destinations.erase(d.hop.key());
  }

  // One connection's life: connect to the first host that answers, then
  // carry jobs of this destination until none is left for
  // connection_cache_ms, the per-connection limit is reached or the
  // connection breaks; reconnect while jobs remain.
  io::Task<void> serve(Destination& d) {
    ++live_tasks;
    ++connections;
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
    --connections;
    connection_closed(d);
    --live_tasks;
    end_if_done();
  }

  // Idle: wait for a job up to connection_cache_ms. False when none came.
  io::Task<bool> wait_for_job(Destination& d) {
    const int64_t deadline = wall_clock_us() + settings.connection_cache_ms * 1000;
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

  // The message's content, read from the spool at its first use. False
  // when it cannot be read: the job's recipients then wait for a retry.
  io::Task<bool> load_content(const Job& job, const std::string& relay, bool encrypted) {
    Message& m = *job.message;
    if (m.content) co_return true;
    const std::string id = m.envelope.id;
    auto read = offload.call(*loop, [this, id] { return spool.read_body(id); });
    Result<std::string> content = co_await read;
    if (!content) {
      finish_job(job, temporary_for(job, "4.3.0", "cannot read the message from the spool: " + content.error()),
                 relay, encrypted, std::nullopt);
      co_return false;
    }
    // Another job of this message may have loaded it meanwhile and be
    // sending from it: never replace content once set.
    if (!m.content) m.content = std::move(content.value());
    co_return true;
  }

  io::Task<void> deliver(Destination& d, SmtpClient& client, const std::string& relay, Job job) {
    Message& m = *job.message;
    auto loading = load_content(job, relay, client.encrypted());
    const bool loaded = co_await loading;
    if (!loaded) co_return;
    if (settings.destination_rate > 0) {
      const int64_t now = wall_clock_us();
      const int64_t slot = std::max(now, d.next_send_us);
      d.next_send_us = slot + static_cast<int64_t>(1e6 / settings.destination_rate);
      if (slot - now >= 1000) co_await loop->sleep((slot - now) / 1000);
    }
    OutboundMessage outbound{&m.envelope, job.recipients, &*m.content};
    std::vector<RecipientOutcome> outcomes = co_await client.send(outbound);
    finish_job(job, outcomes, relay, client.encrypted(),
               client.capabilities().has("DSN") ? std::nullopt : std::optional(dsn::Action::relayed));
  }

  // The hosts of a destination, best first: its MX hosts (without us) or
  // the relay host's addresses.
  io::Task<Result<std::vector<Candidate>, RouteFailure>> candidates(const NextHop& hop) {
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

  // Every job waiting for `d` fails the way its route failed, or goes to the
  // mail router when direct delivery found no route and there is one.
  void fail_destination(Destination& d, const RouteFailure& failure) {
    std::deque<Job> jobs;
    jobs.swap(d.jobs);
    d.jobs_seen_busy = 0;
    std::optional<NextHop> fallback;
    if (failure.fallback_allowed && d.hop.via == "mx") fallback = router.fallback(router_usable);
    for (auto& job : jobs) {
      if (fallback) {
        log::event("fallback", {{"qid", job.message->envelope.id}, {"destination", d.hop.host},
                                {"router", fallback->host}, {"reason", failure.text}});
        enqueue(*fallback, std::move(job));
        continue;
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
  }

  static std::vector<RecipientOutcome> temporary_for(const Job& job, std::string enhanced, std::string text) {
    std::vector<RecipientOutcome> outcomes;
    for (size_t i : job.recipients)
      outcomes.push_back(RecipientOutcome{i, RecipientOutcome::Kind::temporary, 0, enhanced, text});
    return outcomes;
  }

  // ---- local delivery ----
  // The local recipients of a message: each resolved (users, aliases,
  // catch-all, plus-addressing) and written into its Maildirs on the
  // offload thread; alias targets elsewhere are forwarded as a new message.
  io::Task<void> deliver_local(std::shared_ptr<Message> message, std::vector<size_t> indices) {
    ++live_tasks;
    Message& m = *message;
    Job job{message, indices};
    auto loading = load_content(job, "local", false);
    const bool loaded = co_await loading;
    if (!loaded) {
      --live_tasks;
      end_if_done();
      co_return;
    }
    std::vector<RecipientOutcome> outcomes;
    for (size_t i : indices) {
      const std::string address = m.envelope.recipients[i].address;
      auto delivery = deliver_one_local(m, i, address);
      RecipientOutcome outcome = co_await delivery;
      outcomes.push_back(std::move(outcome));
    }
    finish_job(job, outcomes, "local", false, std::optional(dsn::Action::delivered));
    --live_tasks;
    end_if_done();
  }

  io::Task<RecipientOutcome> deliver_one_local(Message& m, size_t index, std::string address) {
    using Kind = RecipientOutcome::Kind;
    const local::Resolution who = local_recipients->resolve(address);
    if (!who.known) {
      const bool loop_found = who.error == local::kAliasLoop;
      co_return RecipientOutcome{index, Kind::permanent, 550, loop_found ? "5.4.6" : "5.1.1",
                                 loop_found ? "alias expansion loop" : "no such user here"};
    }
    // A message that already went through this mailbox is looping.
    if (local::delivered_to_present(*m.content, address))
      co_return RecipientOutcome{index, Kind::permanent, 554, "5.4.6", "mail forwarding loop for " + address};

    std::vector<std::string> mailboxes, forward;
    for (const auto& target : who.targets)
      (target.kind == local::LocalTarget::Kind::mailbox ? mailboxes : forward).push_back(target.value);
    const std::string prefix = concat({"Return-Path: <", m.envelope.sender, ">\r\nDelivered-To: ", address, "\r\n"});
    const LocalSettings& ls = settings.local;
    const std::string* content = &*m.content;
    auto write = offload.call(*loop, [&ls, mailboxes, prefix, content, host = settings.client.helo_name] {
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
        const bool never_fits = m.content->size() > ls.quota_of(mailboxes[k]);
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
      auto forwarded = forward_message(m, index, address, forward);
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
  io::Task<Status> forward_message(Message& m, size_t index, const std::string& alias,
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
    std::string body = concat({"Delivered-To: ", alias, "\r\n", *m.content});
    e.body_size = body.size();
    e.body_chunks = 1;
    e.queue = queue::QueueName::incoming;
    e.next_attempt_us = now;
    const std::string new_id = e.id;
    Status st = co_await SpoolAwait{*loop, [&](queue::Spool::Done done) {
                                      spool.commit(std::move(e), std::move(body), std::move(done));
                                    }};
    if (st) {
      log::event("forwarded", {{"qid", m.envelope.id}, {"rcpt", alias}, {"new_qid", new_id},
                               {"to", std::to_string(targets.size()) + " address(es)"}});
      wake();
    }
    co_return st;
  }

  // ---- notices (DSNs) ----
  // Queues the notices `events` of `m` call for, each committed like a
  // received message (synced), and logs those that were due but dropped.
  io::Task<void> queue_notices(Message& m, const std::vector<dsn::RecipientEvent>& events) {
    const std::string id = m.envelope.id;
    if (!m.content) {
      auto read = offload.call(*loop, [this, id] { return spool.read_body(id); });
      Result<std::string> content = co_await read;
      if (content) {
        m.content = std::move(content.value());
      } else {
        log::event("spool_error", {{"qid", id}, {"reason", "notice without the message: " + content.error()}});
      }
    }
    const int64_t now = wall_clock_us();
    dsn::NoticePlan plan =
        dsn::plan_notices(m.envelope, events, m.content ? std::string_view(*m.content) : std::string_view(),
                          settings.notices, now, m.envelope.arrival_us + settings.retry.max_age_us,
                          [] { return queue::new_queue_id(); });
    for (const auto& why : plan.dropped) log::event("dsn_dropped", {{"qid", id}, {"reason", why}});
    for (auto& notice : plan.notices) {
      const std::string notice_id = notice.envelope.id;
      Status st = co_await SpoolAwait{*loop, [&](queue::Spool::Done done) {
                                        spool.commit(notice.envelope, std::move(notice.content), std::move(done));
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
    if (!plan.notices.empty()) wake();
  }

  // ---- ternctl bounce ----
  io::Task<void> bounce(std::string id, std::vector<std::string> names, std::function<void(Result<size_t>)> done) {
    ++live_tasks;
    Result<size_t> result = co_await bounce_message(id, names);
    done(std::move(result));
    --live_tasks;
    end_if_done();
  }

  io::Task<Result<size_t>> bounce_message(const std::string& id, const std::vector<std::string>& names) {
    if (!enter_active(id)) co_return Error{"message " + id + " is being delivered; try again shortly"};
    auto read = offload.call(*loop, [this, id] { return spool.get(id); });
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
    co_await queue_notices(*message, events);
    const std::string id = env.id;
    Status stored;
    if (has_pending(env)) {
      stored = co_await SpoolAwait{*loop, [&](queue::Spool::Done d) { spool.update(env, std::move(d)); }};
    } else {
      stored = co_await SpoolAwait{*loop, [&](queue::Spool::Done d) { spool.remove(id, "bounced", std::move(d)); }};
      if (stored) log::event("finished", {{"qid", id}, {"result", "bounced"}});
    }
    if (!stored) co_return Error{"spool: " + stored.error()};
    co_return events.size();
  }

  // ---- settling ----
  // `on_success`: the success notice a delivered recipient gets, if asked
  // (none when the server offered DSN and carries NOTIFY onward).
  void finish_job(const Job& job, const std::vector<RecipientOutcome>& outcomes, const std::string& relay,
                  bool encrypted, std::optional<dsn::Action> on_success) {
    Message& m = *job.message;
    const int64_t now = wall_clock_us();
    for (const auto& o : outcomes) {
      record_outcome(m.envelope, o, relay, now);
      if (o.recipient >= m.envelope.recipients.size()) continue;
      if (o.kind == RecipientOutcome::Kind::delivered) m.success_notice[o.recipient] = on_success;
      log::event(kind_name(o.kind), {{"qid", m.envelope.id},
                                     {"rcpt", m.envelope.recipients[o.recipient].address},
                                     {"relay", relay.empty() ? std::string("none") : relay},
                                     {"tls", encrypted ? "yes" : "no"},
                                     {"code", o.code},
                                     {"dsn", o.enhanced},
                                     {"reply", o.text}});
    }
    if (--m.jobs_left == 0) io::spawn(settle_message(job.message));
  }

  io::Task<void> settle_message(std::shared_ptr<Message> message) {
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
        stored = co_await SpoolAwait{*loop, [&](queue::Spool::Done done) { spool.remove(id, reason, std::move(done)); }};
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
    leave_active(id);
    --live_tasks;
    end_if_done();
  }
};

uint64_t LocalSettings::quota_of(std::string_view user) const {
  for (const auto& [name, bytes] : user_quotas)
    if (name == user) return bytes;
  return quota;
}

Result<std::unique_ptr<DeliveryEngine>> DeliveryEngine::start(queue::Spool& spool, EngineSettings settings) {
  auto impl = std::make_unique<Impl>(spool, std::move(settings));
  std::promise<Status> ready;
  auto result = ready.get_future();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw, &ready] {
    name_this_thread("tern-deliver");
    raw->run(&ready);
  });
  Status status = result.get();
  if (!status) {
    impl->thread.join();
    return Error{status.error()};
  }
  return std::unique_ptr<DeliveryEngine>(new DeliveryEngine(std::move(impl)));
}

DeliveryEngine::DeliveryEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DeliveryEngine::~DeliveryEngine() {
  stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void DeliveryEngine::wake() {
  Impl* impl = impl_.get();
  if (impl->wake_posted.exchange(true, std::memory_order_acq_rel)) return;
  impl->loop->post([impl] {
    impl->wake_posted.store(false, std::memory_order_release);
    impl->wake();
  });
}

void DeliveryEngine::stop() {
  Impl* impl = impl_.get();
  impl->loop->post([impl] { impl->begin_stop(); });
}

void DeliveryEngine::flush(std::string target, std::function<void(size_t)> done) {
  Impl* impl = impl_.get();
  impl->loop->post([impl, target = std::move(target), done = std::move(done)]() mutable {
    if (impl->stopping) {
      done(0);
      return;
    }
    io::spawn(impl->flush(std::move(target), std::move(done)));
  });
}

void DeliveryEngine::bounce(std::string id, std::vector<std::string> recipients,
                            std::function<void(Result<size_t>)> done) {
  Impl* impl = impl_.get();
  impl->loop->post([impl, id = std::move(id), recipients = std::move(recipients), done = std::move(done)]() mutable {
    if (impl->stopping) {
      done(Error{"ternd is stopping"});
      return;
    }
    io::spawn(impl->bounce(std::move(id), std::move(recipients), std::move(done)));
  });
}

void DeliveryEngine::set_local_recipients(std::shared_ptr<const local::LocalResolver> resolver) {
  Impl* impl = impl_.get();
  impl->loop->post([impl, resolver = std::move(resolver)]() mutable { impl->local_recipients = std::move(resolver); });
}

size_t DeliveryEngine::active_messages() const {
  return impl_->active_messages.load(std::memory_order_relaxed);
}

void DeliveryEngine::hold_domain(std::string domain, bool hold, std::function<void(Result<size_t>)> done) {
  Impl* impl = impl_.get();
  impl->loop->post([impl, domain = std::move(domain), hold, done = std::move(done)]() mutable {
    if (impl->stopping) {
      done(Error{"ternd is stopping"});
      return;
    }
    io::spawn(impl->hold_domain(std::move(domain), hold, std::move(done)));
  });
}

bool DeliveryEngine::finished() const { return impl_->finished.load(std::memory_order_acquire); }

void DeliveryEngine::abandon() {
  Impl* impl = impl_.get();
  impl->loop->post([impl] { impl->loop->stop(); });
}

}  // namespace tern::delivery
