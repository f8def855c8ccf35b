// One ternd worker thread: an io::ServerThread whose connections run SMTP
// or POP3 sessions. Nothing here is shared with other workers except through
// ServerContext.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dns/resolver.h"
#include "mta/io/server_thread.h"
#include "mta/io/stoppable_session.h"
#include "mta/io/task.h"
#include "mta/server_context.h"

// Instantiated once, in worker.cpp.
extern template class tern::io::ServerThread<tern::io::StoppableSession>;

namespace tern {

// SMTP and POP3 sessions both register (attach/detach): shutdown asks each
// to end and the loop waits for them.
class Worker : public io::ServerThread<io::StoppableSession> {
 public:
  // `listeners`: what each endpoint given to start() serves.
  Worker(ServerContext& ctx, unsigned index, std::shared_ptr<const Settings> settings,
         std::vector<ListenerKind> listeners);
  ~Worker() override;

  // Thread-safe. New settings for sessions that start after this.
  void apply(std::shared_ptr<const Settings> settings);
  // request_stop(): idle sessions get 421 and close; sessions with a
  // transaction open finish it first. abandon() comes after the drain time.

  // ---- loop thread only ----
  ServerContext& context() { return ctx_; }
  const std::shared_ptr<const Settings>& settings() const { return settings_; }
  // The reply text when `ip` is on a blocklist of restrictions.dnsbl
  // (queried through this worker's own resolver; fails open).
  io::Task<std::optional<std::string>> dnsbl_reason(std::string ip);

 private:
  void serve(io::UniqueFd fd, size_t listener) override;
  void accept_failed(int error) override;
  void accept_paused(size_t listener, int error, int64_t retry_ms) override;
  void accept_resumed(size_t listener, const io::AcceptBackoff::Episode& episode) override;

  ServerContext& ctx_;
  std::shared_ptr<const Settings> settings_;
  std::vector<ListenerKind> listeners_;
  std::unique_ptr<dns::Resolver> resolver_;  // created on first use, on the loop thread
};

}  // namespace tern
