// Awaiting a spool request from a loop thread: the request runs on the
// spool's writer thread and its completion is posted back to the loop, so
// the coroutine resumes on its own thread.
#pragma once
#include <coroutine>
#include <functional>

#include "mta/io/loop.h"
#include "queue/spool.h"

namespace tern {

struct SpoolAwait {
  SpoolAwait(io::Loop& l, std::function<void(queue::Spool::Done)> s) : loop(l), start(std::move(s)) {}
  io::Loop& loop;
  std::function<void(queue::Spool::Done)> start;  // issues the request with the given completion
  Status status{};
  std::coroutine_handle<> waiter{};

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    waiter = h;
    start([this](Status s) {
      loop.post([this, s = std::move(s)]() mutable {
        status = std::move(s);
        waiter.resume();
      });
    });
  }
  Status await_resume() { return std::move(status); }
};

}  // namespace tern
