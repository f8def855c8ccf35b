// One serving thread: its own io_uring loop (created on the thread, as
// SINGLE_ISSUER requires), its own SO_REUSEPORT listeners and the sessions
// it accepted. Stopping closes the listeners (the kernel then refuses new
// connections) and asks every session to end; the loop ends with the last
// one. ternd's Worker and tern-sink's SinkWorker are ServerThreads that
// differ in what an accepted connection runs.
//
// A Session calls attach(this) when it starts and detach(this) when it ends,
// and has request_stop() (loop thread).
#pragma once
#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mta/io/accept_backoff.h"
#include "mta/io/loop.h"
#include "mta/io/net.h"
#include "queue/result.h"
#include "queue/thread_name.h"

namespace tern::io {

template <class Session>
class ServerThread {
 public:
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;

  // Binds a listener on each endpoint (SO_REUSEPORT: each thread has its own).
  static Result<std::vector<UniqueFd>> bind(const std::vector<Endpoint>& endpoints) {
    std::vector<UniqueFd> listeners;
    for (const Endpoint& ep : endpoints) {
      auto fd = listen_on(ep);
      if (!fd) return Error{fd.error()};
      listeners.emplace_back(fd.value());
    }
    return listeners;
  }
  // Starts the thread on listeners bound already (ternd binds before it
  // drops root); returns once its loop is up (or failed). Connections are
  // accepted only after accept_connections(): ternd creates every worker's
  // ring first, so that clients waiting in the listeners' backlog cannot
  // take the descriptors a worker still starting needs (under a low open-file
  // limit that made ternd fail to start).
  Status start(std::vector<UniqueFd> listeners) {
    std::promise<Status> ready;
    auto result = ready.get_future();
    thread_ = std::thread([this, fds = std::move(listeners), &ready]() mutable { run(std::move(fds), &ready); });
    return result.get();
  }
  // Binds, starts and accepts at once (tern-sink).
  Status start(const std::vector<Endpoint>& endpoints) {
    auto listeners = bind(endpoints);
    if (!listeners) return Error{"worker " + std::to_string(index_) + ": " + listeners.error()};
    Status started = start(std::move(listeners.value()));
    if (started) accept_connections();
    return started;
  }
  // Thread-safe. Starts accepting on the listeners given to start().
  void accept_connections() {
    post([this] {
      if (stopping_) return;
      for (size_t listener = 0; listener < listeners_.size(); ++listener) {
        loop_->accept_multishot(listeners_[listener].get(),
                                [this, listener](int client) { return on_accept(client, listener); });
      }
    });
  }
  // Thread-safe. Stop accepting and ask every session to end; the loop ends
  // when none remain.
  void request_stop() {
    post([this] { begin_stop(); });
  }
  // Thread-safe. Ends the loop now, whatever is left.
  void abandon() {
    post([this] { loop_->stop(); });
  }
  // Thread-safe. Runs `fn` on the loop thread, if the loop is running.
  template <class Fn>
  void post(Fn&& fn) {
    if (!loop_ || finished()) return;
    loop_->post(std::forward<Fn>(fn));
  }
  bool finished() const { return finished_.load(std::memory_order_acquire); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

  // ---- loop thread only ----
  Loop& loop() { return *loop_; }
  unsigned index() const { return index_; }
  bool stopping() const { return stopping_; }
  void attach(Session* s) { sessions_.insert(s); }
  void detach(Session* s) {
    sessions_.erase(s);
    if (stopping_ && sessions_.empty()) loop_->stop();
  }

 protected:
  // The thread is named `name_prefix` + index ("tern-worker-0").
  ServerThread(unsigned index, std::string_view name_prefix)
      : index_(index), thread_name_(std::string(name_prefix) + std::to_string(index)) {}
  // The thread uses the derived object's members: a derived destructor must
  // join() first. This one only covers a thread that never started.
  virtual ~ServerThread() { join(); }

  // On the loop thread, for each accepted connection while not stopping
  // (TCP_NODELAY already set); `listener` indexes the endpoints given to start().
  virtual void serve(UniqueFd fd, size_t listener) = 0;
  // An accept failed with `error`, not for want of descriptors or memory
  // (a client that gave up, say): the accept is re-armed at once.
  virtual void accept_failed(int /*error*/) {}
  // Descriptors or memory ran out (`error`, see AcceptBackoff): accepting on
  // `listener` pauses, first for `retry_ms`. Called once per episode, not
  // per attempt.
  virtual void accept_paused(size_t /*listener*/, int /*error*/, int64_t /*retry_ms*/) {}
  // An accept on `listener` worked again, a quiet while after the last
  // failure: `episode` is over.
  virtual void accept_resumed(size_t /*listener*/, const AcceptBackoff::Episode& /*episode*/) {}

 private:
  void run(std::vector<UniqueFd> listeners, std::promise<Status>* ready) {
    name_this_thread(thread_name_);
    auto loop = Loop::create();
    if (!loop) {
      finished_.store(true, std::memory_order_release);
      ready->set_value(Error{loop.error()});
      return;
    }
    loop_ = std::move(loop.value());
    listeners_ = std::move(listeners);
    backoffs_.resize(listeners_.size());
    ready->set_value(Status{});  // `ready` dies with start(); not touched after this
    loop_->run();
    finished_.store(true, std::memory_order_release);
  }

  // Returns how long to wait before accepting again after an error.
  int64_t on_accept(int fd, size_t listener) {
    AcceptBackoff& backoff = backoffs_[listener];
    if (fd < 0) {
      if (!AcceptBackoff::is_shortage(-fd)) {
        accept_failed(-fd);
        return 0;
      }
      const bool starts = !backoff.in_episode();
      const int64_t retry_ms = backoff.failed(AcceptBackoff::now_ms());
      if (starts) accept_paused(listener, -fd, retry_ms);
      return retry_ms;
    }
    if (auto episode = backoff.succeeded(AcceptBackoff::now_ms())) accept_resumed(listener, *episode);
    if (stopping_) {
      ::close(fd);
      return 0;
    }
    set_nodelay(fd);
    serve(UniqueFd(fd), listener);
    return 0;
  }

  // Out of the class body: it needs Session complete, so users declare the
  // ServerThread<Session> instantiation extern and instantiate it where
  // Session is defined.
  void begin_stop();

  unsigned index_;
  std::string thread_name_;
  std::unique_ptr<Loop> loop_;
  std::vector<UniqueFd> listeners_;
  std::vector<AcceptBackoff> backoffs_;  // one per listener
  std::unordered_set<Session*> sessions_;
  bool stopping_ = false;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

template <class Session>
void ServerThread<Session>::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& l : listeners_) loop_->cancel_fd(l.get());
  listeners_.clear();  // closed listeners make the kernel refuse new connections
  for (auto* s : sessions_) s->request_stop();
  if (sessions_.empty()) loop_->stop();
}

}  // namespace tern::io
