// Task<T>: a lazily started coroutine that resumes its awaiter when done.
// spawn() starts a Task<void> detached; its frame frees itself at the end.
//
// The stack stays bounded by how deeply tasks await each other, never by how
// many awaits run one after another. A task that finishes without ever
// suspending (a pipelined command whose line is already buffered) hands
// control back to the `await_suspend` that started it, which then lets its
// awaiter go on without suspending; it does not resume the awaiter from
// inside its own frame. Symmetric transfer alone would not do: it is a tail
// call only when the compiler makes it one, which unoptimised and sanitizer
// builds do not, so each pipelined command nested one more frame.
#pragma once
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <utility>

namespace tern::io {

template <typename T>
class Task;

namespace detail {

// Where a task is, as seen by the awaiter that started it.
enum class Start : uint8_t {
  running_inline,   // inside the awaiter's await_suspend, not yet suspended
  suspended,        // suspended at least once: whoever resumes it resumes the awaiter at the end
  finished_inline,  // done before suspending: await_suspend lets the awaiter go on
};

struct FinalAwaiter {
  bool await_ready() noexcept { return false; }
  template <typename P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
    auto& promise = h.promise();
    if (promise.start == Start::running_inline) {
      promise.start = Start::finished_inline;
      return std::noop_coroutine();  // back to the awaiter's await_suspend
    }
    auto next = promise.continuation;
    return next ? next : std::noop_coroutine();
  }
  void await_resume() noexcept {}
};

struct PromiseBase {
  std::coroutine_handle<> continuation;
  Start start = Start::suspended;
  std::suspend_always initial_suspend() noexcept { return {}; }
  FinalAwaiter final_suspend() noexcept { return {}; }
  // Exceptions are not used across the loop; one escaping a coroutine is a bug.
  void unhandled_exception() noexcept { std::terminate(); }
};

// Starts the task `h` for `awaiter`. Returns false when it has already
// finished (the awaiter goes on at once, one frame shallower than a resume
// from the task's end would leave it), true when it suspended and will
// resume the awaiter when it ends.
template <typename P>
bool start_task(std::coroutine_handle<P> h, std::coroutine_handle<> awaiter) noexcept {
  auto& promise = h.promise();
  promise.continuation = awaiter;
  promise.start = Start::running_inline;
  h.resume();
  if (promise.start == Start::finished_inline) return false;
  promise.start = Start::suspended;
  return true;
}

}  // namespace detail

template <typename T>
class [[nodiscard]] Task {
 public:
  struct promise_type : detail::PromiseBase {
    std::optional<T> value;
    Task get_return_object() { return Task(std::coroutine_handle<promise_type>::from_promise(*this)); }
    template <typename U>
    void return_value(U&& v) { value.emplace(std::forward<U>(v)); }
  };
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&&) = delete;
  ~Task() { if (h_) h_.destroy(); }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> awaiter) noexcept { return detail::start_task(h_, awaiter); }
  T await_resume() { return std::move(*h_.promise().value); }

 private:
  explicit Task(std::coroutine_handle<promise_type> h) : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

template <>
class [[nodiscard]] Task<void> {
 public:
  struct promise_type : detail::PromiseBase {
    Task get_return_object() { return Task(std::coroutine_handle<promise_type>::from_promise(*this)); }
    void return_void() noexcept {}
  };
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&&) = delete;
  ~Task() { if (h_) h_.destroy(); }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> awaiter) noexcept { return detail::start_task(h_, awaiter); }
  void await_resume() noexcept {}

 private:
  explicit Task(std::coroutine_handle<promise_type> h) : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
// The frame of a detached task: owns the Task it runs and destroys itself
// when that Task completes.
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};
inline Detached run_detached(Task<void> task) { co_await task; }
}  // namespace detail

// Starts `task` now; it runs until its first suspension and then on the loop.
inline void spawn(Task<void> task) { detail::run_detached(std::move(task)); }

}  // namespace tern::io
