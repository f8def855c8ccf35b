// ternctl's side door: a UNIX socket served by its own thread (the spool
// reads it does are blocking RocksDB calls, which must stay off the loops).
// Protocol: the client sends one line of words; the server answers with
// "ok" or "error <message>" on the first line, the output after it, and closes.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "mta/io/net.h"
#include "queue/result.h"
#include "mta/policy/pop_window.h"
#include "queue/spool.h"

namespace tern {

class ControlServer {
 public:
  // Extra counters for `ternctl stats` (e.g. open connections).
  using StatsSource = std::function<std::vector<std::pair<std::string, uint64_t>>()>;
  // What ternctl asks of the delivery engine; empty when ternd does not deliver.
  struct DeliveryControls {
    // flush [TARGET]: makes matching mail due now; how many messages.
    std::function<Result<size_t>(const std::string& target)> flush;
    // hold-domain / release-domain D: how many messages were released.
    std::function<Result<size_t>(const std::string& domain, bool hold)> hold_domain;
    // bounce ID [RCPT...]: fails pending recipients with a DSN; how many.
    std::function<Result<size_t>(const std::string& id, const std::vector<std::string>& recipients)> bounce;
  };
  // ternctl popauth: the POP-before-SMTP window store (null: unavailable)
  // and the window's length when a command does not give one.
  struct AccessControls {
    policy::PopWindow* pop_window = nullptr;
    unsigned pop_window_minutes = 30;
  };
  ControlServer(queue::Spool& spool, StatsSource stats, DeliveryControls delivery, AccessControls access);
  ~ControlServer();
  // Binds the socket (mode 0600; ternd does it before dropping root).
  static Result<io::UniqueFd> listen(const std::string& socket_path);
  // Serves the socket from listen() on the control thread.
  void start(io::UniqueFd listening, const std::string& socket_path);

  // Runs one request (exposed for tests): returns the full response.
  std::string handle(const std::string& request_line);

 private:
  void serve();
  std::string stats_report(bool json);
  std::string queue_listing(bool json);
  std::string show(const std::string& id, bool body);
  std::string move_all(const std::vector<std::string>& ids, const std::string& verb);

  queue::Spool& spool_;
  StatsSource stats_;
  DeliveryControls delivery_;
  AccessControls access_;
  std::string popauth(const std::vector<std::string>& args);
  std::string path_;
  io::UniqueFd listen_fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tern
