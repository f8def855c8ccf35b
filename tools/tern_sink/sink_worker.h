// One tern-sink worker thread: an io::ServerThread whose connections run
// sink sessions, and their counters. Workers share only
// SinkShared, which is read-only except for the fault plan's atomic counters.
#pragma once
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "mta/io/server_thread.h"
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

}  // namespace tern::sink

// Instantiated once, in sink_worker.cpp, where SinkSession is complete.
extern template class tern::io::ServerThread<tern::sink::SinkSession>;

namespace tern::sink {

class SinkWorker : public io::ServerThread<SinkSession> {
 public:
  SinkWorker(const SinkShared& shared, unsigned index);
  ~SinkWorker() override;

  // request_stop() ends every session (their reads see EOF).

  // Thread-safe: a copy of the counters, taken on the loop thread while it
  // runs (nullopt if it did not answer within `wait`), or directly once the
  // thread has ended.
  std::optional<SinkStats> snapshot(std::chrono::milliseconds wait);

  // ---- loop thread only ----
  const SinkShared& shared() const { return shared_; }
  SinkStats& stats() { return stats_; }

 private:
  void serve(io::UniqueFd fd, size_t listener) override;

  const SinkShared& shared_;
  SinkStats stats_;
};

}  // namespace tern::sink
