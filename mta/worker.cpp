#include "mta/worker.h"

#include "mta/log.h"
#include "mta/policy/dnsbl.h"
#include "mta/pop3/pop3_session.h"
#include "mta/text.h"
#include "mta/smtp/session.h"

template class tern::io::ServerThread<tern::io::StoppableSession>;

namespace tern {

Worker::Worker(ServerContext& ctx, unsigned index, std::shared_ptr<const Settings> settings,
               std::vector<ListenerKind> listeners)
    : ServerThread(index, "tern-worker-"), ctx_(ctx), settings_(std::move(settings)), listeners_(std::move(listeners)) {}

Worker::~Worker() { join(); }

void Worker::serve(io::UniqueFd fd, size_t listener) {
  const ListenerKind kind = listeners_.at(listener);
  if (kind == ListenerKind::pop3 || kind == ListenerKind::pop3s) {
    io::spawn(pop3::run_pop3_session(*this, std::move(fd), kind == ListenerKind::pop3s));
    return;
  }
  io::spawn(smtp::run_session(*this, std::move(fd), kind));
}

void Worker::accept_failed(int error) { log::event("accept_error", {{"worker", index()}, {"errno", error}}); }

void Worker::accept_paused(size_t listener, int error, int64_t retry_ms) {
  // The connections open in the whole process: they hold the descriptors.
  log::event("accept_paused", {{"worker", index()},
                               {"listener", listener_kind_name(listeners_.at(listener))},
                               {"error", io::AcceptBackoff::error_name(error)},
                               {"connections", ctx_.limiter.total() + ctx_.pop3_limiter.total()},
                               {"retry_ms", retry_ms}});
}

void Worker::accept_resumed(size_t listener, const io::AcceptBackoff::Episode& episode) {
  log::event("accept_resumed", {{"worker", index()},
                                {"listener", listener_kind_name(listeners_.at(listener))},
                                {"pauses", episode.pauses},
                                {"shortage_ms", episode.shortage_ms}});
}

void Worker::apply(std::shared_ptr<const Settings> settings) {
  post([this, settings = std::move(settings)]() mutable { settings_ = std::move(settings); });
}

io::Task<std::optional<std::string>> Worker::dnsbl_reason(std::string ip) {
  const auto address = dns::IpAddress::parse(ip);
  if (!address) co_return std::nullopt;
  const Config& config = settings_->config;
  if (!resolver_) {
    dns::ResolverOptions options;
    options.servers = config.dns.servers;
    options.timeout_ms = config.restrictions.dnsbl_timeout_ms;  // one try: a slow list is skipped
    options.tries = 1;
    options.cache_entries = config.dns.cache_entries;
    auto created = dns::Resolver::create(loop(), std::move(options));
    if (!created) {
      log::event("dnsbl_unavailable", {{"worker", index()}, {"reason", created.error()}});
      co_return std::nullopt;
    }
    resolver_ = std::move(created.value());
  }
  const std::vector<std::string> zones = config.restrictions.dnsbl;
  auto check = policy::check_dnsbl(*resolver_, *address, zones);
  std::optional<policy::DnsblHit> hit = co_await check;
  if (!hit) co_return std::nullopt;
  co_return concat({"Service unavailable; client [", ip, "] blocked using ", hit->zone, ": ", hit->reason});
}

}  // namespace tern
