#include "mta/io/loop.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mta/io/net.h"

namespace tern::io {

namespace {

void set_timespec(__kernel_timespec* ts, int64_t ms) {
  ts->tv_sec = ms / 1000;
  ts->tv_nsec = (ms % 1000) * 1'000'000;
}

std::string uring_unavailable(int err) {
  std::string why = "io_uring is not available (" + std::string(strerror(err)) + ")";
  if (err == EPERM || err == ENOSYS || err == EACCES)
    why += ": check the sysctl kernel.io_uring_disabled (must be 0) and, in a container, "
           "the seccomp profile (it must allow io_uring_setup, io_uring_enter, io_uring_register)";
  return why;
}

}  // namespace

struct Loop::AcceptOp : Operation {
  Loop* loop;
  int fd;
  bool cancelled = false;
  std::function<int64_t(int)> on_accept;
  // The timer that re-arms the accept after a pause. Not cancelled with
  // the accept: when it fires, `cancelled` keeps it from re-arming.
  struct Pause : Operation {
    AcceptOp* accept = nullptr;
    __kernel_timespec ts{};
  } pause;
};

Result<std::unique_ptr<Loop>> Loop::create(unsigned entries) {
  std::unique_ptr<Loop> loop(new Loop());  // private constructor: make_unique cannot reach it
  io_uring_params params{};
  // One thread submits and completions run only when it waits: the cheapest
  // mode, and exactly our one-loop-per-thread model.
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int rc = io_uring_queue_init_params(entries, &loop->ring_, &params);
  if (rc == -EINVAL) {  // older kernel: plain ring
    params = {};
    rc = io_uring_queue_init_params(entries, &loop->ring_, &params);
  }
  if (rc < 0) return Error{uring_unavailable(-rc)};
  loop->ring_ok_ = true;

  // Provided buffers (liburing 2.3 lacks io_uring_setup_buf_ring: map the
  // ring memory ourselves and register it).
  loop->buf_ring_bytes_ = kBufferCount * sizeof(io_uring_buf);
  void* ring_mem = mmap(nullptr, loop->buf_ring_bytes_, PROT_READ | PROT_WRITE,
                        MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (ring_mem == MAP_FAILED) return Error{std::string("mmap buffer ring: ") + strerror(errno)};
  loop->buf_ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
  void* buf_mem = mmap(nullptr, size_t{kBufferCount} * kBufferSize, PROT_READ | PROT_WRITE,
                       MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (buf_mem == MAP_FAILED) return Error{std::string("mmap buffers: ") + strerror(errno)};
  loop->buffers_ = static_cast<unsigned char*>(buf_mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uintptr_t>(ring_mem);
  reg.ring_entries = kBufferCount;
  reg.bgid = kBufferGroup;
  rc = io_uring_register_buf_ring(&loop->ring_, &reg, 0);
  if (rc < 0)
    return Error{"io_uring provided buffer rings are not supported (" + std::string(strerror(-rc)) +
                 "): Linux 5.19 or later is required"};
  io_uring_buf_ring_init(loop->buf_ring_);
  const int mask = io_uring_buf_ring_mask(kBufferCount);
  for (unsigned i = 0; i < kBufferCount; ++i)
    io_uring_buf_ring_add(loop->buf_ring_, loop->buffers_ + size_t{i} * kBufferSize, kBufferSize,
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  io_uring_buf_ring_advance(loop->buf_ring_, kBufferCount);

  loop->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (loop->wake_fd_ < 0) return Error{std::string("eventfd: ") + strerror(errno)};
  loop->wake_op_.loop = loop.get();
  loop->wake_op_.complete = [](Operation* op, int, uint32_t) {
    Loop* self = static_cast<WakeOp*>(op)->loop;
    self->drain_posted();
    self->arm_wakeup();
  };
  loop->arm_wakeup();
  return loop;
}

Loop::~Loop() {
  if (ring_ok_) {
    if (buf_ring_) io_uring_unregister_buf_ring(&ring_, kBufferGroup);
    io_uring_queue_exit(&ring_);
  }
  if (buf_ring_) munmap(buf_ring_, buf_ring_bytes_);
  if (buffers_) munmap(buffers_, size_t{kBufferCount} * kBufferSize);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Loop::arm_wakeup() {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, wake_fd_, &wake_value_, sizeof wake_value_, 0);
  io_uring_sqe_set_data(s, &wake_op_);
}

void Loop::post(std::function<void()> fn) {
  bool first;
  {
    std::lock_guard lock(posted_mu_);
    first = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  // One wake-up per batch, not per function: whoever found the queue empty
  // wakes the loop, which then runs everything posted until it drains.
  if (!first) return;
  uint64_t one = 1;
  // A full counter still wakes the loop; nothing to handle.
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
}

void Loop::drain_posted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(posted_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void Loop::run() {
  while (!stopping_) {
    int rc = io_uring_submit_and_wait(&ring_, 1);
    if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) break;
    unsigned head;
    unsigned count = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++count;
      auto* op = static_cast<Operation*>(io_uring_cqe_get_data(cqe));
      if (op) op->complete(op, cqe->res, cqe->flags);  // linked timeouts carry no data
    }
    io_uring_cq_advance(&ring_, count);
  }
}

io_uring_sqe* Loop::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (!s) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void Loop::submit_with_timeout(io_uring_sqe* s, Operation* op, __kernel_timespec* ts, int64_t timeout_ms) {
  io_uring_sqe_set_data(s, op);
  if (timeout_ms <= 0) return;
  s->flags |= IOSQE_IO_LINK;
  set_timespec(ts, timeout_ms);
  io_uring_sqe* t = sqe();  // contiguous with `s`: callers reserve(2) first
  io_uring_prep_link_timeout(t, ts, 0);
  io_uring_sqe_set_data(t, nullptr);
}

void Loop::take_buffer(uint16_t bid, unsigned len, std::string* sink) {
  unsigned char* buf = buffers_ + size_t{bid} * kBufferSize;
  if (sink) sink->append(reinterpret_cast<const char*>(buf), len);
  io_uring_buf_ring_add(buf_ring_, buf, kBufferSize, bid, io_uring_buf_ring_mask(kBufferCount), 0);
  io_uring_buf_ring_advance(buf_ring_, 1);
}

Loop::RecvAwaiter Loop::recv(int fd, std::string* sink, int64_t timeout_ms) {
  RecvAwaiter a;
  a.loop = this;
  a.fd = fd;
  a.sink = sink;
  a.timeout_ms = timeout_ms;
  return a;
}

Loop::IoAwaiter Loop::send(int fd, std::string_view data, int64_t timeout_ms) {
  IoAwaiter a;
  a.loop = this;
  a.fd = fd;
  a.data = data;
  a.timeout_ms = timeout_ms;
  a.kind = IoAwaiter::Kind::send;
  return a;
}

Loop::IoAwaiter Loop::sleep(int64_t ms) {
  IoAwaiter a;
  a.loop = this;
  a.fd = -1;
  a.timeout_ms = ms;
  a.kind = IoAwaiter::Kind::sleep;
  return a;
}

Loop::IoAwaiter Loop::connect(int fd, const Endpoint& ep, int64_t timeout_ms) {
  IoAwaiter a;
  a.loop = this;
  a.fd = fd;
  a.endpoint = &ep;
  a.timeout_ms = timeout_ms;
  a.kind = IoAwaiter::Kind::connect;
  return a;
}

Loop::IoAwaiter Loop::poll(int fd, unsigned events, int64_t timeout_ms) {
  IoAwaiter a;
  a.loop = this;
  a.fd = fd;
  a.timeout_ms = timeout_ms;
  a.poll_events = events;
  a.kind = IoAwaiter::Kind::poll;
  return a;
}

void Loop::cancel(Operation* op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel(s, op, 0);
  io_uring_sqe_set_data(s, nullptr);
}

void Loop::RecvAwaiter::await_suspend(std::coroutine_handle<> h) {
  waiter = h;
  complete = [](Operation* op, int res, uint32_t flags) {
    auto* self = static_cast<RecvAwaiter*>(op);
    if (flags & IORING_CQE_F_BUFFER)
      self->loop->take_buffer(static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT),
                              res > 0 ? static_cast<unsigned>(res) : 0, self->sink);
    self->result = res;
    self->loop->finished();
    self->waiter.resume();
  };
  loop->reserve(2);
  io_uring_sqe* s = loop->sqe();
  io_uring_prep_recv(s, fd, nullptr, kBufferSize, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = kBufferGroup;
  loop->submit_with_timeout(s, this, &ts, timeout_ms);
  loop->started();
}

void Loop::IoAwaiter::await_suspend(std::coroutine_handle<> h) {
  waiter = h;
  complete = [](Operation* op, int res, uint32_t) {
    auto* self = static_cast<IoAwaiter*>(op);
    self->result = res;
    self->loop->finished();
    self->waiter.resume();
  };
  loop->reserve(2);
  io_uring_sqe* s = loop->sqe();
  if (kind == Kind::sleep) {
    set_timespec(&ts, timeout_ms);
    io_uring_prep_timeout(s, &ts, 0, 0);
    io_uring_sqe_set_data(s, this);
  } else if (kind == Kind::poll) {
    io_uring_prep_poll_add(s, fd, poll_events);
    loop->submit_with_timeout(s, this, &ts, timeout_ms);
  } else if (kind == Kind::connect) {
    io_uring_prep_connect(s, fd, reinterpret_cast<const sockaddr*>(&endpoint->addr), endpoint->len);
    loop->submit_with_timeout(s, this, &ts, timeout_ms);
  } else {
    io_uring_prep_send(s, fd, data.data(), data.size(), MSG_NOSIGNAL);
    loop->submit_with_timeout(s, this, &ts, timeout_ms);
  }
  loop->started();
}

void Loop::accept_multishot(int fd, std::function<int64_t(int)> on_accept) {
  auto op = std::make_unique<AcceptOp>();
  op->loop = this;
  op->fd = fd;
  op->on_accept = std::move(on_accept);
  op->complete = [](Operation* o, int res, uint32_t flags) {
    auto* self = static_cast<AcceptOp*>(o);
    if (self->cancelled) return;
    const int64_t pause_ms = res == -ECANCELED ? 0 : self->on_accept(res);
    if ((flags & IORING_CQE_F_MORE) || self->cancelled || self->loop->stopping_) return;
    if (pause_ms <= 0) {
      self->loop->arm_accept(self);
      return;
    }
    set_timespec(&self->pause.ts, pause_ms);
    io_uring_sqe* s = self->loop->sqe();
    io_uring_prep_timeout(s, &self->pause.ts, 0, 0);
    io_uring_sqe_set_data(s, &self->pause);
  };
  op->pause.accept = op.get();
  op->pause.complete = [](Operation* o, int, uint32_t) {
    AcceptOp* accept = static_cast<AcceptOp::Pause*>(o)->accept;
    if (!accept->cancelled && !accept->loop->stopping_) accept->loop->arm_accept(accept);
  };
  arm_accept(op.get());
  accepts_.push_back(std::move(op));
}

void Loop::arm_accept(AcceptOp* op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, op->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data(s, op);
}

void Loop::cancel_fd(int fd) {
  for (auto& a : accepts_) {
    if (a->fd != fd || a->cancelled) continue;
    a->cancelled = true;
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel(s, a.get(), 0);
    io_uring_sqe_set_data(s, nullptr);
  }
}

void Loop::reserve(unsigned n) {
  if (io_uring_sq_space_left(&ring_) < n) io_uring_submit(&ring_);
}

}  // namespace tern::io
