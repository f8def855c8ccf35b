#include "dns/resolver.h"

#include <ares.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <optional>
#include <unordered_map>

#include "dns/message.h"

namespace tern::dns {

namespace {

constexpr int kClassIn = 1;

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

// NXDOMAIN, as a plain lookup (lookup_a, lookup_txt) reports it.
DnsError no_such_domain(const std::string& name, RecordType type) {
  return DnsError{Failure::nxdomain, name + " " + std::string(type_name(type)) + " lookup: no such domain (NXDOMAIN)"};
}

struct AresDestroy {
  void operator()(ares_channel c) const { ares_destroy(c); }
};
using AresChannel = std::unique_ptr<ares_channeldata, AresDestroy>;

}  // namespace

// c-ares state plus what the loop needs to serve it. The watch and timer
// coroutines hold it by shared_ptr: one that completes after the Resolver is
// gone finds the channel closed and ends without touching anything else.
struct Resolver::Channel : std::enable_shared_from_this<Channel> {
  struct Watch {
    int fd = -1;
    unsigned events = 0;
    bool closed = false;
    io::Operation* poll = nullptr;  // the poll in flight, if any
  };

  explicit Channel(io::Loop& l) : loop(l) {}

  io::Loop& loop;
  AresChannel ares;
  int64_t poll_timeout_ms = 0;
  std::unordered_map<int, std::shared_ptr<Watch>> watches;
  bool timer_running = false;
  int64_t timer_wake_ms = 0;
  io::Operation* timer_sleep = nullptr;
  // Lookups whose answers arrived inside a c-ares call; resumed once it has
  // returned, so a lookup may start the next query without re-entering c-ares.
  std::vector<std::coroutine_handle<>> ready;

  // c-ares opened, changed or is about to close one of its sockets.
  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<Channel*>(data)->watch(fd, (readable ? POLLIN : 0) | (writable ? POLLOUT : 0));
  }

  void watch(int fd, unsigned events) {
    auto it = watches.find(fd);
    if (events == 0) {
      if (it == watches.end()) return;
      it->second->closed = true;
      if (it->second->poll) loop.cancel(it->second->poll);  // the fd closes next; the poll must not linger
      watches.erase(it);
      return;
    }
    if (it != watches.end()) {
      if (it->second->events != events && it->second->poll) loop.cancel(it->second->poll);  // re-polls with these
      it->second->events = events;
      return;
    }
    auto w = std::make_shared<Watch>();
    w->fd = fd;
    w->events = events;
    watches.emplace(fd, w);
    io::spawn(serve(shared_from_this(), std::move(w)));
  }

  static io::Task<void> serve(std::shared_ptr<Channel> self, std::shared_ptr<Watch> w) {
    while (!w->closed) {
      auto poll = self->loop.poll(w->fd, w->events, self->poll_timeout_ms);
      w->poll = &poll;
      const int res = co_await poll;
      w->poll = nullptr;
      if (w->closed || !self->ares) break;
      if (res == -ECANCELED) continue;  // timed out or the wanted events changed: poll again
      // An error on the fd (res < 0) is c-ares' to discover on its next read/write.
      const bool all = res < 0 || (res & (POLLERR | POLLHUP));
      const ares_socket_t rfd = all || (res & POLLIN) ? w->fd : ARES_SOCKET_BAD;
      const ares_socket_t wfd = all || (res & POLLOUT) ? w->fd : ARES_SOCKET_BAD;
      self->process(rfd, wfd);
    }
  }

  // c-ares' clock: retransmissions and timeouts are due when ares_timeout says.
  static io::Task<void> run_timer(std::shared_ptr<Channel> self) {
    while (self->ares) {
      timeval tv{};
      if (!ares_timeout(self->ares.get(), nullptr, &tv)) break;  // no query pending
      const int64_t ms = std::max<int64_t>(1, tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
      self->timer_wake_ms = now_ms() + ms;
      auto sleep = self->loop.sleep(ms);
      self->timer_sleep = &sleep;
      const int res = co_await sleep;
      self->timer_sleep = nullptr;
      if (!self->ares) break;
      if (res == -ETIME) self->process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    }
    self->timer_running = false;
  }

  void process(ares_socket_t rfd, ares_socket_t wfd) {
    ares_process_fd(ares.get(), rfd, wfd);
    after_ares_call();
  }

  // After every call that may have started or finished queries: keep the
  // timer on the earliest deadline, then resume the lookups that are done.
  void after_ares_call() {
    auto keep = shared_from_this();  // a resumed lookup may destroy the Resolver
    if (ares) {
      timeval tv{};
      if (ares_timeout(ares.get(), nullptr, &tv)) {
        const int64_t due = now_ms() + tv.tv_sec * 1000 + tv.tv_usec / 1000;
        if (!timer_running) {
          timer_running = true;
          io::spawn(run_timer(keep));
        } else if (timer_sleep && due < timer_wake_ms) {
          loop.cancel(timer_sleep);  // wakes early and sleeps until `due`
        }
      }
    }
    while (!ready.empty()) {
      std::vector<std::coroutine_handle<>> batch;
      batch.swap(ready);
      for (auto h : batch) h.resume();
    }
  }

  void shutdown() {
    ares.reset();  // answers pending queries with ARES_EDESTRUCTION
    ready.clear();
    for (auto& [fd, w] : watches) {
      w->closed = true;
      if (w->poll) loop.cancel(w->poll);
    }
    watches.clear();
    if (timer_sleep) loop.cancel(timer_sleep);
  }
};

struct Resolver::Reply {
  int status = ARES_SUCCESS;
  std::vector<uint8_t> message;  // empty when no response arrived
};

// One ares_query, started on construction and awaited once. Not movable:
// c-ares holds its address until the answer.
class Resolver::Query {
 public:
  Query(Channel& channel, const std::string& name, RecordType type) : channel_(channel) {
    ares_query(channel.ares.get(), name.c_str(), kClassIn, static_cast<int>(type), &Query::on_answer, this);
    channel.after_ares_call();
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  bool await_ready() const noexcept { return done_; }
  void await_suspend(std::coroutine_handle<> h) noexcept { waiter_ = h; }
  Reply await_resume() noexcept { return std::move(reply_); }

 private:
  static void on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    auto* self = static_cast<Query*>(arg);
    self->reply_.status = status;
    if (abuf && alen > 0) self->reply_.message.assign(abuf, abuf + alen);
    self->done_ = true;
    if (self->waiter_) self->channel_.ready.push_back(self->waiter_);
  }

  Channel& channel_;
  bool done_ = false;
  Reply reply_;
  std::coroutine_handle<> waiter_;
};

Result<std::unique_ptr<Resolver>> Resolver::create(io::Loop& loop, ResolverOptions options) {
  static const int library_status = ares_library_init(ARES_LIB_INIT_ALL);
  if (library_status != ARES_SUCCESS)
    return Error{std::string("c-ares initialisation failed: ") + ares_strerror(library_status)};
  if (options.timeout_ms <= 0 || options.tries == 0) return Error{"DNS timeout and tries must be positive"};

  auto channel = std::make_shared<Channel>(loop);
  ares_options ao{};
  ao.sock_state_cb = &Channel::on_socket_state;
  ao.sock_state_cb_data = channel.get();
  ao.timeout = static_cast<int>(options.timeout_ms);
  ao.tries = static_cast<int>(options.tries);
  ares_channel raw = nullptr;
  const int rc = ares_init_options(&raw, &ao, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
  if (rc != ARES_SUCCESS) return Error{std::string("c-ares channel: ") + ares_strerror(rc)};
  channel->ares.reset(raw);
  if (!options.servers.empty()) {
    std::string csv;
    for (const auto& s : options.servers) csv += (csv.empty() ? "" : ",") + s;
    const int src = ares_set_servers_ports_csv(raw, csv.c_str());
    if (src != ARES_SUCCESS) return Error{"bad DNS server list \"" + csv + "\": " + ares_strerror(src)};
  }
  // A poll is re-armed when it times out, so this only bounds how long a
  // quiet socket's poll stays in the ring.
  channel->poll_timeout_ms = options.timeout_ms * options.tries;
  return std::unique_ptr<Resolver>(new Resolver(std::move(options), std::move(channel)));
}

Resolver::Resolver(ResolverOptions options, std::shared_ptr<Channel> channel)
    : options_(std::move(options)),
      limits_{options_.max_ttl_s, options_.negative_ttl_cap_s},
      cache_(options_.cache_entries),
      rng_(std::random_device{}()),
      channel_(std::move(channel)) {}

Resolver::~Resolver() { channel_->shutdown(); }

DnsResult<RecordSet> Resolver::absorb(const std::string& name, RecordType type, const Reply& reply) {
  const std::string what = name + " " + std::string(type_name(type)) + " lookup: ";
  if (reply.message.empty()) {
    switch (reply.status) {
      case ARES_EBADNAME: return DnsError{Failure::nxdomain, what + "not a valid domain name"};
      // c-ares moves on from a server that answers SERVFAIL or REFUSED and,
      // when every try failed that way, reports it as ECONNREFUSED.
      case ARES_ECONNREFUSED:
        return DnsError{Failure::temporary, what + "no usable answer (server failure, refused or unreachable)"};
      case ARES_ETIMEOUT: return DnsError{Failure::temporary, what + "timed out"};
      default: return DnsError{Failure::temporary, what + ares_strerror(reply.status)};
    }
  }
  auto response = parse_response(reply.message, type);
  if (!response) return DnsError{Failure::temporary, what + response.error()};
  auto set = classify(*response, name, type);
  if (set) cache_.store(name, type, *set, cache_ttl(*response, *set, limits_), now_ms());
  return set;
}

io::Task<DnsResult<RecordSet>> Resolver::lookup(std::string name, RecordType type) {
  if (const RecordSet* cached = cache_.find(name, type, now_ms())) co_return *cached;
  Query query(*channel_, name, type);
  const Reply reply = co_await query;
  co_return absorb(name, type, reply);
}

io::Task<std::vector<DnsResult<RecordSet>>> Resolver::lookup_many(std::vector<std::string> names,
                                                                  RecordType type) {
  std::vector<std::optional<DnsResult<RecordSet>>> got(names.size());
  std::vector<std::unique_ptr<Query>> queries(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) {
      got[i] = DnsResult<RecordSet>(DnsError{Failure::nxdomain, "an empty name"});
    } else if (const RecordSet* cached = cache_.find(names[i], type, now_ms())) {
      got[i] = DnsResult<RecordSet>(*cached);
    } else {
      queries[i] = std::make_unique<Query>(*channel_, names[i], type);
    }
  }
  for (size_t i = 0; i < names.size(); ++i) {
    if (!queries[i]) continue;
    Query& pending = *queries[i];
    const Reply reply = co_await pending;
    got[i] = absorb(names[i], type, reply);
  }
  std::vector<DnsResult<RecordSet>> out;
  out.reserve(got.size());
  for (auto& g : got) out.push_back(std::move(*g));
  co_return out;
}

io::Task<std::vector<AddrResult>> Resolver::lookup_a_many(std::vector<std::string> names) {
  for (auto& n : names) n = normalize_name(n);
  std::vector<DnsResult<RecordSet>> sets = co_await lookup_many(names, RecordType::a);
  std::vector<AddrResult> out;
  out.reserve(sets.size());
  for (size_t i = 0; i < sets.size(); ++i) {
    if (!sets[i].ok())
      out.push_back(sets[i].error());
    else if (sets[i]->kind == RecordSet::Kind::nxdomain)
      out.push_back(no_such_domain(names[i], RecordType::a));
    else
      out.push_back(sets[i]->addresses);
  }
  co_return out;
}

io::Task<AddrResult> Resolver::lookup_a(std::string name) {
  std::vector<std::string> names{std::move(name)};
  std::vector<AddrResult> results = co_await lookup_a_many(std::move(names));
  co_return std::move(results.front());
}

io::Task<TextResult> Resolver::lookup_txt(std::string name) {
  std::vector<std::string> names{normalize_name(name)};
  std::vector<DnsResult<RecordSet>> sets = co_await lookup_many(names, RecordType::txt);
  DnsResult<RecordSet>& set = sets.front();
  if (!set.ok()) co_return set.error();
  if (set->kind == RecordSet::Kind::nxdomain) co_return no_such_domain(names.front(), RecordType::txt);
  co_return std::move(set->texts);
}

io::Task<AddrResult> Resolver::resolve_addresses(std::string host) {
  const AddressLiteral literal = parse_address_literal(host);
  if (literal.kind == LiteralKind::address) co_return std::vector<IpAddress>{literal.address};
  if (literal.kind == LiteralKind::malformed)
    co_return DnsError{Failure::bad_literal, host + " is not a valid address literal"};
  const std::string name = normalize_name(host);
  if (name.empty()) co_return DnsError{Failure::nxdomain, "an empty host name"};
  if (const auto* fixed = options_.hosts.find(name)) co_return *fixed;

  // A and AAAA are asked at once; each answer is awaited in turn.
  std::optional<DnsResult<RecordSet>> a, aaaa;
  if (const RecordSet* cached = cache_.find(name, RecordType::a, now_ms())) a = *cached;
  if (const RecordSet* cached = cache_.find(name, RecordType::aaaa, now_ms())) aaaa = *cached;
  std::optional<Query> query_a, query_aaaa;
  if (!a) query_a.emplace(*channel_, name, RecordType::a);
  if (!aaaa) query_aaaa.emplace(*channel_, name, RecordType::aaaa);
  if (query_a) {
    Query& pending = *query_a;  // named: g++ 12 copies the awaiter of `co_await *optional`
    a = absorb(name, RecordType::a, co_await pending);
  }
  if (query_aaaa) {
    Query& pending = *query_aaaa;
    aaaa = absorb(name, RecordType::aaaa, co_await pending);
  }
  co_return merge_addresses(name, *a, *aaaa);
}

io::Task<MxResult> Resolver::resolve_mx(std::string domain) {
  const AddressLiteral literal = parse_address_literal(domain);
  if (literal.kind == LiteralKind::address)
    co_return MxRoute{domain, MxRoute::Source::literal, {MxHost{0, domain, {literal.address}}}};
  if (literal.kind == LiteralKind::malformed)
    co_return DnsError{Failure::bad_literal, domain + " is not a valid address literal"};
  const std::string name = normalize_name(domain);
  if (name.empty()) co_return DnsError{Failure::nxdomain, "an empty domain"};
  if (const auto* fixed = options_.hosts.find(name))
    co_return MxRoute{name, MxRoute::Source::hosts_table, {MxHost{0, name, *fixed}}};

  const DnsResult<RecordSet> mx = co_await lookup(name, RecordType::mx);
  if (!mx) co_return mx.error();
  MxPlan plan = plan_mx(name, *mx, rng_);
  if (plan.kind == MxPlan::Kind::fail) co_return plan.error;
  if (plan.kind == MxPlan::Kind::implicit_mx) {
    AddrResult own = co_await resolve_addresses(name);
    if (!own) co_return own.error();
    co_return MxRoute{name, MxRoute::Source::implicit_mx, {MxHost{0, name, std::move(*own)}}};
  }
  std::vector<AddrResult> addresses;
  addresses.reserve(plan.exchanges.size());
  for (const MxRecord& exchange : plan.exchanges) addresses.push_back(co_await resolve_addresses(exchange.exchange));
  co_return assemble_route(name, plan.exchanges, addresses);
}

}  // namespace tern::dns
