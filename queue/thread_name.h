// Names the calling thread, so that `top -H`, /proc/PID/task/*/comm, perf
// and debuggers tell ternd's threads apart (docs/operations.md lists them).
// Called by each thread first thing; here because queue/ is the lowest layer
// and its threads (spool writer, reclaimer) need it as well.
#pragma once
#include <pthread.h>

#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

namespace tern {

// Linux keeps 15 bytes of a name; longer names are cut rather than refused
// (pthread_setname_np fails with ERANGE). Best effort: a thread that keeps
// its inherited name works the same.
inline void name_this_thread(std::string_view name) {
  constexpr size_t kMaxName = 15;
  const std::string cut(name.substr(0, kMaxName));
  pthread_setname_np(pthread_self(), cut.c_str());
}

// Runs `fn` on a new thread named `name`, waits for it and returns what it
// returned: a thread that `fn` starts and does not name itself inherits the
// name (Linux copies it at creation). When no thread can be started, `fn`
// runs on the caller's. `fn` must not throw.
template <typename Fn>
auto run_on_named_thread(std::string_view name, Fn fn) -> decltype(fn()) {
  std::optional<decltype(fn())> result;
  try {
    std::thread runner([&] {
      name_this_thread(name);
      result.emplace(fn());
    });
    runner.join();
  } catch (const std::system_error&) {
    return fn();
  }
  return std::move(*result);
}

}  // namespace tern
