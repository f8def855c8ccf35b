// One tern-sink worker thread: one io_uring loop, its own SO_REUSEPORT
// listeners, the sessions it accepted and their counters. Workers share only
// SinkShared, which is read-only except for the fault plan's atomic counters.
#pragma once
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "mta/io/loop.h"
#include "mta/io/net.h"
#include "mta/io/tls.h"
#include "tools/tern_sink/fault_plan.h"
#include "tools/tern_sink/message_store.h"
#include "tools/tern_sink/options.h"
#include "tools/tern_sink/report.h"

namespace tern::sink {

class SinkSession;

// Everything sessions of every worker read; built once by main.
struct SinkShared {
  SinkShared(const SinkOptions& opts, FaultPlan& plan, std::shared_ptr<const io::TlsContext> tls_context,
             MessageStore* message_store);
  const SinkOptions& options;
  FaultPlan& faults;
  std::shared_ptr<const io::TlsContext> tls;  // null when STARTTLS is hidden
  MessageStore* store;                        // null: bodies are discarded
  // Replies that never change, built once.
  std::string banner;           // "220 <hostname> ESMTP tern-sink\r\n"
  std::string ehlo_reply;       // before TLS (STARTTLS offered when advertised)
  std::string ehlo_reply_tls;   // inside TLS
  std::string helo_reply;       // "250 <hostname>\r\n"
};

class SinkWorker {
 public:
  SinkWorker(const SinkShared& shared, unsigned index);
  ~SinkWorker();
  SinkWorker(const SinkWorker&) = delete;
  SinkWorker& operator=(const SinkWorker&) = delete;

  // Starts the thread; returns once its loop and listeners are up (or failed).
  Status start(const std::vector<io::Endpoint>& endpoints);
  // Thread-safe. Stops accepting and ends every session (their reads see
  // EOF); the loop ends when none remain.
  void request_stop();
  // Thread-safe. Ends the loop now, whatever is left.
  void abandon();
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  void join();
  // Thread-safe: a copy of the counters, taken on the loop thread while it
  // runs (nullopt if it did not answer within `wait`), or directly once the
  // thread has ended.
  std::optional<SinkStats> snapshot(std::chrono::milliseconds wait);

  // ---- loop thread only ----
  io::Loop& loop() { return *loop_; }
  const SinkShared& shared() const { return shared_; }
  SinkStats& stats() { return stats_; }
  bool stopping() const { return stopping_; }
  void attach(SinkSession* s) { sessions_.insert(s); }
  void detach(SinkSession* s);

 private:
  void run(const std::vector<io::Endpoint>& endpoints, std::promise<Status>* ready);
  void on_accept(int fd);
  void begin_stop();

  const SinkShared& shared_;
  unsigned index_;
  std::unique_ptr<io::Loop> loop_;
  std::vector<io::UniqueFd> listeners_;
  std::unordered_set<SinkSession*> sessions_;
  SinkStats stats_;
  bool stopping_ = false;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace tern::sink
