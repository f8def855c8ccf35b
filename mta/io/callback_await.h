// Awaiting a callback-style operation from a loop thread: `start(done)`
// begins it; `done(value)` may be called on any thread (the spool's writer,
// the delivery engine's loop) and resumes the awaiting coroutine on its own
// loop with `value`:
//
//   size_t n = co_await io::CallbackAwait<size_t>{loop, [&](auto done) { engine.flush(d, done); }};
//
// `done` must be called exactly once, and the coroutine must stay alive
// until it has resumed.
#pragma once
#include <coroutine>
#include <functional>
#include <optional>
#include <utility>

#include "mta/io/loop.h"

namespace tern::io {

template <class T>
struct CallbackAwait {
  using Done = std::function<void(T)>;
  CallbackAwait(Loop& l, std::function<void(Done)> s) : loop(l), start(std::move(s)) {}
  Loop& loop;
  std::function<void(Done)> start;  // issues the operation with the given completion
  std::optional<T> value{};
  std::coroutine_handle<> waiter{};

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    waiter = h;
    start([this](T v) {
      loop.post([this, v = std::move(v)]() mutable {
        value = std::move(v);
        waiter.resume();
      });
    });
  }
  T await_resume() { return std::move(*value); }
};

}  // namespace tern::io
