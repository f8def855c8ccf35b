// A thread for the blocking calls a loop thread must not make (RocksDB
// reads, file system work). Jobs run in submission order on the offload
// thread; an awaiting coroutine resumes on its own loop with the result:
//
//   Result<std::string> body = co_await offload.call(loop, [&] { return spool.read_body(id); });
//
// The awaiting coroutine must stay alive until it resumes (as for any
// awaited I/O); the offload thread must outlive every loop that uses it.
#pragma once
#include <condition_variable>
#include <coroutine>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

#include "mta/io/loop.h"

namespace tern::io {

class OffloadThread {
 public:
  // `name` names the thread (by what it serves: "tern-auth").
  explicit OffloadThread(std::string_view name);
  ~OffloadThread();  // runs the jobs still queued, then joins
  OffloadThread(const OffloadThread&) = delete;
  OffloadThread& operator=(const OffloadThread&) = delete;

  // Thread-safe.
  void submit(std::function<void()> job);

  template <class Fn>
  struct Call {
    using Value = std::invoke_result_t<Fn&>;
    OffloadThread& offload;
    Loop& loop;
    Fn fn;
    std::optional<Value> value{};
    std::coroutine_handle<> waiter{};

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      waiter = h;
      offload.submit([this] {
        value.emplace(fn());
        loop.post([this] { waiter.resume(); });
      });
    }
    Value await_resume() { return std::move(*value); }
  };
  // Runs `fn` on the offload thread; the awaiting coroutine gets its result on `loop`.
  template <class Fn>
  Call<Fn> call(Loop& loop, Fn fn) {
    return Call<Fn>{*this, loop, std::move(fn)};
  }

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;  // guarded by mutex_
  bool stopping_ = false;                   // guarded by mutex_
  std::thread thread_;
};

}  // namespace tern::io
