// One io_uring event loop, owned by one worker thread. The ring is wrapped
// here, thinly; everything above talks in awaitables:
//   int n = co_await loop.recv(fd, &input, timeout_ms);  // appends to input
//   int n = co_await loop.send(fd, data, timeout_ms);
// Every socket operation carries a linked timeout, so no await can hang.
#pragma once
#include <liburing.h>

#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "queue/result.h"

namespace tern::io {

struct Endpoint;

// A submitted request; user_data of its SQE points here. `complete` is
// called for every CQE (several for multishot requests).
struct Operation {
  void (*complete)(Operation* self, int res, uint32_t flags) = nullptr;
};

class Loop {
 public:
  // Creates the ring and registers the provided-buffer ring. Fails with a
  // message naming the cause when io_uring is not available.
  static Result<std::unique_ptr<Loop>> create(unsigned entries = 4096);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Runs until stop() has been called and no operations remain.
  void run();
  void stop() { stopping_ = true; }
  bool stopping() const { return stopping_; }

  // Thread-safe: runs `fn` on this loop's thread soon.
  void post(std::function<void()> fn);

  // ---- awaitables (loop thread only) ----
  struct RecvAwaiter;
  struct IoAwaiter;
  // Receives into a provided buffer and appends the bytes to *sink; the
  // buffer goes straight back to the ring, so idle connections hold none.
  // Result: > 0 bytes, 0 EOF, < 0 -errno (-ECANCELED/-ETIME on timeout).
  RecvAwaiter recv(int fd, std::string* sink, int64_t timeout_ms);
  IoAwaiter send(int fd, std::string_view data, int64_t timeout_ms);
  IoAwaiter sleep(int64_t ms);
  // Connects the non-blocking socket `fd` to `ep` (which must outlive the
  // await). Result: 0 connected, < 0 -errno.
  IoAwaiter connect(int fd, const Endpoint& ep, int64_t timeout_ms);
  // Waits until `fd` is ready for `events` (POLLIN, POLLOUT; one shot), for
  // descriptors owned by a library that does its own I/O (c-ares).
  // Result: the ready events (> 0), < 0 -errno (-ECANCELED on timeout or cancel()).
  IoAwaiter poll(int fd, unsigned events, int64_t timeout_ms);
  // Cancels one in-flight operation, e.g. a poll whose descriptor is about
  // to be closed or a sleep that should end early; it completes with -ECANCELED.
  void cancel(Operation* op);

  // Multishot accept on `fd`; `on_accept(client_fd)` for each connection
  // (client_fd < 0: -errno). An error ends the multishot request: unless
  // stopping or cancelled, it is re-armed after the milliseconds on_accept
  // returned (0: at once; more when retrying at once cannot work, EMFILE).
  void accept_multishot(int fd, std::function<int64_t(int)> on_accept);
  // Cancels every request on `fd` (used to stop accepting).
  void cancel_fd(int fd);

  // Raw submission for awaiters: make room for n SQEs (so a linked pair is
  // contiguous), get an SQE, attach the operation and a linked timeout.
  void reserve(unsigned n);
  io_uring_sqe* sqe();
  void submit_with_timeout(io_uring_sqe* sqe, Operation* op, __kernel_timespec* ts, int64_t timeout_ms);

  // Operations still awaiting their completion.
  size_t in_flight() const { return in_flight_; }

 private:
  Loop() = default;
  static constexpr unsigned kBufferGroup = 1;
  static constexpr unsigned kBufferCount = 256;
  static constexpr unsigned kBufferSize = 16 * 1024;
  void arm_wakeup();
  struct AcceptOp;
  void arm_accept(AcceptOp* op);
  // Copies a provided buffer's bytes out and returns the buffer to the ring.
  void take_buffer(uint16_t bid, unsigned len, std::string* sink);
  void drain_posted();

  io_uring ring_{};
  bool ring_ok_ = false;
  io_uring_buf_ring* buf_ring_ = nullptr;
  size_t buf_ring_bytes_ = 0;
  unsigned char* buffers_ = nullptr;
  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  struct WakeOp : Operation {
    Loop* loop = nullptr;
  } wake_op_;
  bool stopping_ = false;
  size_t in_flight_ = 0;
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::unique_ptr<AcceptOp>> accepts_;

  friend struct RecvAwaiter;
  friend struct IoAwaiter;
  friend struct AcceptOp;
  void started() { ++in_flight_; }
  void finished() { --in_flight_; }
};

// A single-shot operation awaited by one coroutine.
struct Loop::IoAwaiter : Operation {
  Loop* loop;
  int fd;
  std::string_view data;
  const Endpoint* endpoint = nullptr;
  int64_t timeout_ms;
  unsigned poll_events = 0;
  enum class Kind { send, sleep, connect, poll } kind;
  __kernel_timespec ts{};
  int result = 0;
  std::coroutine_handle<> waiter;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  int await_resume() const noexcept { return result; }
};

struct Loop::RecvAwaiter : Operation {
  Loop* loop;
  int fd;
  std::string* sink;
  int64_t timeout_ms;
  __kernel_timespec ts{};
  int result = 0;
  std::coroutine_handle<> waiter;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  int await_resume() const noexcept { return result; }
};

}  // namespace tern::io
