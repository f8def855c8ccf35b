#include "mta/daemon.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "mta/clock.h"
#include "mta/config.h"
#include "mta/control_server.h"
#include "mta/delivery/delivery_engine.h"
#include "mta/delivery/engine_config.h"
#include "mta/fd_budget.h"
#include "mta/log.h"
#include "mta/privileges.h"
#include "mta/server_context.h"
#include "mta/storage_guard.h"
#include "mta/worker.h"
#include "queue/spool.h"

namespace tern {

namespace {

ConfigParse load(const std::string& path) {
  return path.empty() ? parse_config(default_config_toml(), "(embedded default)") : load_config_file(path);
}

std::string machine_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

Result<std::shared_ptr<const Settings>> build_settings(const Config& config) {
  auto relay = RelayPolicy::build(config);
  if (!relay) return Error{"relay: " + relay.error()};
  auto s = std::make_shared<Settings>(Settings{config, std::move(relay.value()), nullptr,
                                               config.server.hostname.empty() ? machine_hostname()
                                                                              : config.server.hostname});
  if (!config.tls.certificate.empty()) {
    auto tls = io::TlsContext::create_server(
        config.tls.certificate, config.tls.private_key,
        io::TlsProtocols{config.tls.min_version, config.tls.ciphers, config.tls.ciphersuites});
    if (!tls) return Error{"tls: " + tls.error()};
    s->tls = std::move(tls.value());
  }
  if (!config.auth.users_file.empty()) {
    auto users = policy::UserDirectory::load(config.auth.users_file);
    if (!users) return Error{"auth.users_file: " + users.error()};
    s->users = std::make_shared<const policy::UserDirectory>(std::move(users.value()));
  }
  s->local_recipients = std::make_shared<const local::LocalResolver>(
      s->users ? s->users : std::make_shared<const policy::UserDirectory>(), config.relay.local_domains,
      config.local.recipient_delimiter, config.local.catch_all);
  s->check_local_recipients = (s->users && !s->users->empty()) || !config.local.catch_all.empty();
  for (const auto& text : config.restrictions.deny) {
    auto net = Network::parse(text);
    if (!net) return Error{"restrictions.deny: " + net.error()};
    s->deny.push_back(*net);
  }
  return std::shared_ptr<const Settings>(std::move(s));
}

// The spool's failures and recoveries, one line each.
void log_spool_event(const queue::SpoolEvent& e) {
  switch (e.kind) {
    case queue::SpoolEvent::Kind::write_failed:
      log::event("spool_write_failed", {{"error", e.error}, {"requests", e.requests}});
      break;
    case queue::SpoolEvent::Kind::background_error:
      log::event("spool_background_error", {{"error", e.error}});
      break;
    case queue::SpoolEvent::Kind::recovered:
      log::event("spool_recovered", {});
      break;
    case queue::SpoolEvent::Kind::recovery_failed:
      log::event("spool_recovery_failed", {{"error", e.error}});
      break;
    case queue::SpoolEvent::Kind::rocksdb_warning:
      log::event("spool_rocksdb", {{"message", e.error}});
      break;
    case queue::SpoolEvent::Kind::reclaimed:
      log::event(
          "spool_reclaim",
          {{"bytes_before", e.bytes_before}, {"bytes_after", e.bytes_after}, {"duration_ms", e.duration_us / 1000}});
      break;
    case queue::SpoolEvent::Kind::reclaim_failed:
      log::event("spool_reclaim_failed", {{"error", e.error}});
      break;
  }
}

void make_parent_dir(const std::string& path) {
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
}

// Fits the connection limits of `config` into the open-file limit (at start
// and at every reload) and says what it found.
void fit_file_limit(Config& config, unsigned workers, size_t listeners, const FileLimit& files,
                    const std::string& raise_error) {
  const FdFit fit = fit_fd_budget(config, workers, listeners, files.soft);
  std::string lowered;
  for (const std::string& l : fit.lowered) lowered += (lowered.empty() ? "" : ", ") + l;
  if (lowered.empty())
    log::event("fd_limit", {{"soft", files.soft}, {"hard", files.hard}, {"needed", fit.needed}, {"status", "ok"}});
  else
    log::event("fd_limit", {{"soft", files.soft},
                            {"hard", files.hard},
                            {"needed", fit.needed},
                            {"status", "lowered"},
                            {"lowered", lowered},
                            {"why", "the configured connection limits need more open files than the limit allows"}});
  if (!raise_error.empty()) log::event("fd_limit_not_raised", {{"error", raise_error}});
}

// Settings a running daemon cannot change: they need a restart.
void warn_fixed_settings(const Config& old_cfg, const Config& new_cfg) {
  auto warn = [](const char* key) { log::event("reload_needs_restart", {{"key", key}}); };
  if (old_cfg.smtp.listen != new_cfg.smtp.listen) warn("smtp.listen");
  if (old_cfg.smtp.submission != new_cfg.smtp.submission) warn("smtp.submission");
  if (old_cfg.smtp.submissions != new_cfg.smtp.submissions) warn("smtp.submissions");
  if (old_cfg.pop3.listen != new_cfg.pop3.listen || old_cfg.pop3.listen_tls != new_cfg.pop3.listen_tls)
    warn("pop3.listen");
  if (old_cfg.server.workers != new_cfg.server.workers) warn("server.workers");
  if (old_cfg.delivery.loops != new_cfg.delivery.loops) warn("delivery.loops");
  if (old_cfg.server.user != new_cfg.server.user || old_cfg.server.group != new_cfg.server.group)
    warn("server.user");
  if (old_cfg.queue.directory != new_cfg.queue.directory) warn("queue.directory");
  if (old_cfg.control.socket != new_cfg.control.socket) warn("control.socket");
  if (old_cfg.log.target != new_cfg.log.target || old_cfg.log.file != new_cfg.log.file ||
      old_cfg.log.format != new_cfg.log.format)
    warn("log");
}

}  // namespace

int run_daemon(const std::string& config_path) {
  // The spool, Maildirs, the log and the control socket hold mail or give
  // access to it: nothing ternd creates is for other users.
  umask(077);
  auto parsed = load(config_path);
  if (!parsed.ok()) {
    for (const auto& e : parsed.errors)
      fprintf(stderr, "ternd: %s: %s\n", config_path.empty() ? "(embedded default)" : config_path.c_str(),
              format_config_error(e).c_str());
    return 1;
  }
  Config config = parsed.config;
  if (auto st = log::init({config.log.format, config.log.target, config.log.file}); !st) {
    fprintf(stderr, "ternd: log: %s\n", st.error().c_str());
    return 1;
  }
  auto fatal = [](const std::string& what) {
    log::event("fatal", {{"error", what}});
    log::shutdown();
    return 1;
  };
  std::vector<io::Endpoint> endpoints;
  std::vector<ListenerKind> listener_kinds;
  for (const auto& [list, kind] : {std::pair{&config.smtp.listen, ListenerKind::mta},
                                   std::pair{&config.smtp.submission, ListenerKind::submission},
                                   std::pair{&config.smtp.submissions, ListenerKind::submissions},
                                   std::pair{&config.pop3.listen, ListenerKind::pop3},
                                   std::pair{&config.pop3.listen_tls, ListenerKind::pop3s}}) {
    for (const auto& l : *list) {
      auto ep = io::parse_endpoint(l);
      if (!ep) return fatal(ep.error());
      endpoints.push_back(ep.value());
      listener_kinds.push_back(kind);
    }
  }
  const unsigned n_workers = worker_count(config);

  // Before anything opens descriptors in numbers, and while still root
  // (though raising the soft limit to the hard one needs no privilege).
  std::string raise_error;
  auto files = raise_file_limit(&raise_error);
  if (!files) return fatal(files.error());
  fit_file_limit(config, n_workers, endpoints.size(), files.value(), raise_error);
  auto settings = build_settings(config);
  if (!settings) return fatal(settings.error());

  // Signals are taken synchronously by this thread; every other thread
  // inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto account = service_account(config.server);
  if (!account) return fatal(account.error());
  for (const std::string& dir : {config.queue.directory, config.local.maildir_root}) {
    if (auto st = private_directory(dir); !st) return fatal(st.error());
  }
  if (config.log.target == "file") {
    if (auto st = narrow_to_owner(config.log.file); !st) return fatal(st.error());
  }
  make_parent_dir(config.control.socket);

  // What needs root happens before it is dropped: the control socket and
  // every worker's listeners are bound now. The control socket comes first,
  // so that ternctl works as soon as the SMTP port answers.
  auto control_socket = ControlServer::listen(config.control.socket);
  if (!control_socket) return fatal(control_socket.error());
  log::event("control_listening", {{"socket", config.control.socket}});
  std::vector<std::vector<io::UniqueFd>> listeners;
  for (unsigned i = 0; i < n_workers; ++i) {
    auto bound = Worker::bind(endpoints);
    if (!bound) return fatal("worker " + std::to_string(i) + ": " + bound.error());
    listeners.push_back(std::move(bound.value()));
  }
  if (account.value() && geteuid() == 0) {
    const ServiceAccount& service = *account.value();
    // The account owns what it writes to from now on. (The control socket
    // stays root's: the next start replaces it if the account cannot remove it.)
    for (const std::string& dir : {config.queue.directory, config.local.maildir_root}) {
      if (auto st = hand_over(dir, service); !st) return fatal(st.error());
    }
    if (config.log.target == "file" && chown(config.log.file.c_str(), service.uid, service.gid) != 0)
      return fatal("chown " + config.log.file + ": " + strerror(errno));
    if (auto st = drop_privileges(service); !st) return fatal("dropping privileges: " + st.error());
  }

  queue::SpoolOptions spool_options{config.queue.directory, config.queue.finished_retention_ms * 1000,
                                    queue::Spool::write_reserve_bytes(), log_spool_event};
  auto spool = queue::Spool::open(spool_options);
  if (!spool) return fatal("spool: " + spool.error());
  auto requeued = spool.value()->recover();
  if (!requeued) return fatal("spool recovery: " + requeued.error());
  log::event("recovered", {{"requeued", requeued.value()}, {"directory", config.queue.directory}});

  StorageGuard storage(*spool.value(), config.queue.min_free_space, config.smtp.max_message_size,
                       config.queue.space_check_interval_ms);
  ServerContext ctx{*spool.value(), storage};
  auto pop_window = policy::PopWindow::open(config.queue.directory + "/popauth", wall_clock_us());
  if (!pop_window) return fatal(pop_window.error());
  ctx.pop_window = pop_window.value().get();
  // Their jobs post completions to the workers' loops: both are stopped
  // (below) while the workers, stopped too, still exist.
  auto auth_offload = std::make_unique<io::OffloadThread>("tern-auth");
  auto mail_offload = std::make_unique<io::OffloadThread>("tern-pop3-io");
  ctx.auth_offload = auth_offload.get();
  ctx.mail_offload = mail_offload.get();

  std::unique_ptr<delivery::DeliveryEngine> engine;
  if (config.delivery.enabled) {
    auto engine_settings = delivery::engine_settings(config, settings.value()->hostname, endpoints, n_workers);
    if (!engine_settings) return fatal(engine_settings.error());
    engine_settings.value().local_recipients = settings.value()->local_recipients;
    const unsigned loops = engine_settings.value().loops;
    const size_t active_per_destination = engine_settings.value().active_per_destination;
    auto started = delivery::DeliveryEngine::start(*spool.value(), std::move(engine_settings.value()));
    if (!started) return fatal("delivery: " + started.error());
    engine = std::move(started.value());
    log::event("delivery_started",
               {{"loops", loops},
                {"max_connections", config.delivery.max_connections},
                {"max_per_destination", config.delivery.max_per_destination},
                {"active_limit", config.delivery.active_limit},
                {"active_per_destination", active_per_destination},
                {"router", config.routing.router.empty() ? std::string("none") : config.routing.router},
                {"firewall", config.routing.firewall ? "yes" : "no"},
                {"transport_entries", config.routing.transport.size()},
                {"dns", config.dns.servers.empty() ? std::string("resolv.conf") : config.dns.servers.front()}});
    ctx.queued = [e = engine.get()] { e->wake(); };
    ctx.flush = [e = engine.get()](std::string target, std::function<void(size_t)> done) {
      e->flush(std::move(target), std::move(done));
    };
  }

  ControlServer::DeliveryControls delivery_controls;
  if (engine) {
    // The control thread may block: it waits for the engine's answer, but
    // not forever (an engine that has stopped never answers).
    delivery_controls.flush = [e = engine.get()](const std::string& target) -> Result<size_t> {
      auto answer = std::make_shared<std::promise<size_t>>();
      auto result = answer->get_future();
      e->flush(target, [answer](size_t n) { answer->set_value(n); });
      if (result.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
        return Error{"the delivery engine did not answer"};
      return result.get();
    };
    delivery_controls.hold_domain = [e = engine.get()](const std::string& domain, bool hold) -> Result<size_t> {
      auto answer = std::make_shared<std::promise<Result<size_t>>>();
      auto result = answer->get_future();
      e->hold_domain(domain, hold, [answer](Result<size_t> r) { answer->set_value(std::move(r)); });
      if (result.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
        return Error{"the delivery engine did not answer"};
      return result.get();
    };
    delivery_controls.bounce = [e = engine.get()](const std::string& id,
                                                  const std::vector<std::string>& recipients) -> Result<size_t> {
      auto answer = std::make_shared<std::promise<Result<size_t>>>();
      auto result = answer->get_future();
      e->bounce(id, recipients, [answer](Result<size_t> r) { answer->set_value(std::move(r)); });
      if (result.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
        return Error{"the delivery engine did not answer"};
      return result.get();
    };
  }
  auto control = std::make_unique<ControlServer>(
      *spool.value(),
      [&ctx, e = engine.get()] {
        return std::vector<std::pair<std::string, uint64_t>>{
            {"connections", ctx.limiter.total()},
            {"active_messages", e ? e->active_messages() : 0},
            {"active_put_back", e ? e->put_back_messages() : 0},
            {"destinations_at_share", e ? e->destinations_at_share() : 0}};
      },
      std::move(delivery_controls), ControlServer::AccessControls{ctx.pop_window, config.relay.pop_window_minutes});
  control->start(std::move(control_socket.value()), config.control.socket);
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < n_workers; ++i) {
    workers.push_back(std::make_unique<Worker>(ctx, i, settings.value(), listener_kinds));
    if (auto st = workers.back()->start(std::move(listeners[i])); !st) {
      for (auto& w : workers) w->abandon();
      for (auto& w : workers) w->join();
      return fatal(st.error());
    }
  }
  for (auto& w : workers) w->accept_connections();  // every ring exists: see ServerThread::start
  for (size_t i = 0; i < endpoints.size(); ++i)
    log::event("listening", {{"address", endpoints[i].text}, {"listener", listener_kind_name(listener_kinds[i])}});

  log::event("started", {{"workers", n_workers}, {"pid", getpid()}});

  auto current = settings.value();
  for (;;) {
    siginfo_t info{};
    int sig = sigwaitinfo(&signals, &info);
    if (sig == SIGHUP) {
      if (config_path.empty()) {
        log::event("reload", {{"status", "ok"}, {"note", "embedded configuration, nothing to reload"}});
        continue;
      }
      auto fresh = load_config_file(config_path);
      if (!fresh.ok()) {
        for (const auto& e : fresh.errors)
          log::event("reload", {{"status", "error"}, {"error", format_config_error(e)}});
        continue;
      }
      fit_file_limit(fresh.config, n_workers, endpoints.size(), files.value(), "");
      auto next = build_settings(fresh.config);
      if (!next) {
        log::event("reload", {{"status", "error"}, {"error", next.error()}});
        continue;
      }
      warn_fixed_settings(current->config, fresh.config);
      storage.configure(fresh.config.queue.min_free_space, fresh.config.smtp.max_message_size,
                        fresh.config.queue.space_check_interval_ms);
      current = next.value();
      for (auto& w : workers) w->apply(current);
      if (engine) engine->set_local_recipients(current->local_recipients);
      log::event("reload", {{"status", "ok"}, {"config", config_path}});
    } else if (sig == SIGTERM || sig == SIGINT) {
      break;
    }
  }

  ctx.stopping = true;  // first: sessions accepted from now on answer "shutting down"
  log::event("stopping", {{"drain_timeout_ms", current->config.server.drain_timeout_ms}});
  for (auto& w : workers) w->request_stop();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(current->config.server.drain_timeout_ms);
  auto all_done = [&] {
    for (auto& w : workers)
      if (!w->finished()) return false;
    return true;
  };
  while (!all_done() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  bool drained = all_done();
  if (!drained) {
    log::event("drain_timeout", {{"connections", ctx.limiter.total()}});
    for (auto& w : workers) w->abandon();
  }
  for (auto& w : workers) w->join();
  // The control thread uses the engine and the spool: it ends before them.
  control.reset();
  if (engine) {
    // Connections end after their current transaction, within what is left
    // of the drain time; unfinished messages stay in `active` for recovery.
    engine->stop();
    while (!engine->finished() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!engine->finished()) engine->abandon();
    engine.reset();
  }
  // The spool and the offload threads go first: they may still complete
  // requests of abandoned sessions, which post to the loops the workers
  // still own (a stopped loop only queues them).
  spool.value().reset();
  auth_offload.reset();
  mail_offload.reset();
  workers.clear();
  log::event("stopped", {{"drained", drained ? "yes" : "no"}});
  log::shutdown();
  return 0;
}

}  // namespace tern
