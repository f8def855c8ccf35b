// One worker thread: one io_uring loop, its own SO_REUSEPORT listeners and
// the sessions it accepted. Nothing here is shared with other workers except
// through ServerContext.
#pragma once
#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "mta/io/loop.h"
#include "mta/io/net.h"
#include "mta/server_context.h"

namespace tern {

namespace smtp {
class Session;
}

class Worker {
 public:
  Worker(ServerContext& ctx, unsigned index, std::shared_ptr<const Settings> settings);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread; returns once its loop and listeners are up (or failed).
  Status start(const std::vector<io::Endpoint>& endpoints);
  // Thread-safe. New settings for sessions that start after this.
  void apply(std::shared_ptr<const Settings> settings);
  // Thread-safe. Stop accepting; idle sessions get 421 and close; sessions
  // with a transaction open finish it first. The loop ends when none remain.
  void request_stop();
  // Thread-safe. Ends the loop now, whatever is left (after the drain time).
  void abandon();
  bool finished() const { return finished_.load(); }
  void join();

  // ---- loop thread only ----
  io::Loop& loop() { return *loop_; }
  ServerContext& context() { return ctx_; }
  const std::shared_ptr<const Settings>& settings() const { return settings_; }
  unsigned index() const { return index_; }
  bool stopping() const { return stopping_; }
  void attach(smtp::Session* s) { sessions_.insert(s); }
  void detach(smtp::Session* s);

 private:
  void run(std::vector<io::Endpoint> endpoints, std::promise<Status>* ready);
  void begin_stop();
  void on_accept(int fd);

  ServerContext& ctx_;
  unsigned index_;
  std::shared_ptr<const Settings> settings_;
  std::unique_ptr<io::Loop> loop_;
  std::vector<io::UniqueFd> listeners_;
  std::unordered_set<smtp::Session*> sessions_;
  bool stopping_ = false;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace tern
