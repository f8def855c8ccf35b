// One ternd worker thread: an io::ServerThread whose connections run SMTP
// sessions. Nothing here is shared with other workers except through
// ServerContext.
#pragma once
#include <memory>

#include "mta/io/server_thread.h"
#include "mta/server_context.h"

namespace tern {

namespace smtp {
class Session;
}

}  // namespace tern

// Instantiated once, in worker.cpp, where Session is complete.
extern template class tern::io::ServerThread<tern::smtp::Session>;

namespace tern {

class Worker : public io::ServerThread<smtp::Session> {
 public:
  Worker(ServerContext& ctx, unsigned index, std::shared_ptr<const Settings> settings);
  ~Worker() override;

  // Thread-safe. New settings for sessions that start after this.
  void apply(std::shared_ptr<const Settings> settings);
  // request_stop(): idle sessions get 421 and close; sessions with a
  // transaction open finish it first. abandon() comes after the drain time.

  // ---- loop thread only ----
  ServerContext& context() { return ctx_; }
  const std::shared_ptr<const Settings>& settings() const { return settings_; }

 private:
  void serve(io::UniqueFd fd) override;
  void accept_failed(int error) override;

  ServerContext& ctx_;
  std::shared_ptr<const Settings> settings_;
};

}  // namespace tern
