// What an accept loop does when the process runs out of descriptors (or
// kernel memory). The kernel keeps the connection queued, so retrying at
// once fails again at once: a loop that re-arms immediately burns a CPU and
// writes a log line per attempt. Instead it pauses, 10 ms at first and
// doubling to 1 s while the shortage lasts; an accept that works makes the
// next pause short again.
//
// Whoever owns the loop reports the start and the end of an episode, never
// each attempt. At the limit, every descriptor that comes back is taken by
// the next accept and the one after fails again: so an episode ends only
// with an accept that works a quiet second after the last pause ended.
//
// Pure logic (time is passed in), shared by the workers' listeners
// (mta/io/server_thread.h) and the control socket (mta/control_server.cpp).
#pragma once
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>

namespace tern::io {

class AcceptBackoff {
 public:
  static constexpr int64_t kFirstPauseMs = 10;
  static constexpr int64_t kMaxPauseMs = 1'000;
  // An episode is over once accepts work this long after the last pause.
  static constexpr int64_t kQuietMs = 1'000;

  // Errors that an immediate retry cannot cure: descriptors or memory are
  // short, and something else has to give them back first.
  static bool is_shortage(int error) {
    return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
  }

  // The name of a shortage's errno, for the log.
  static const char* error_name(int error) {
    switch (error) {
      case EMFILE: return "EMFILE";
      case ENFILE: return "ENFILE";
      case ENOBUFS: return "ENOBUFS";
      case ENOMEM: return "ENOMEM";
    }
    return "other";
  }

  // The clock failed() and succeeded() are meant to be given.
  static int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  struct Episode {
    unsigned pauses = 0;      // accepts that failed and were paused for
    int64_t shortage_ms = 0;  // from the first of them to the last
  };

  bool in_episode() const { return in_episode_; }

  // An accept failed with a shortage at `now_ms`: how long to wait before
  // the next one. in_episode() was false before the call when this starts
  // an episode.
  int64_t failed(int64_t now_ms) {
    if (!in_episode_) {
      in_episode_ = true;
      since_ms_ = now_ms;
      pauses_ = 0;
    }
    ++pauses_;
    last_failure_ms_ = now_ms;
    const int64_t pause = next_pause_ms_;
    next_pause_ms_ = next_pause_ms_ * 2 > kMaxPauseMs ? kMaxPauseMs : next_pause_ms_ * 2;
    retry_due_ms_ = now_ms + pause;
    return pause;
  }

  // An accept worked at `now_ms`: the episode it ends, if one was going on
  // and has been quiet long enough.
  std::optional<Episode> succeeded(int64_t now_ms) {
    next_pause_ms_ = kFirstPauseMs;
    if (!in_episode_ || now_ms - retry_due_ms_ < kQuietMs) return std::nullopt;
    in_episode_ = false;
    return Episode{pauses_, last_failure_ms_ - since_ms_};
  }

 private:
  bool in_episode_ = false;
  unsigned pauses_ = 0;
  int64_t since_ms_ = 0;
  int64_t last_failure_ms_ = 0;
  int64_t retry_due_ms_ = 0;  // when the last pause ended
  int64_t next_pause_ms_ = kFirstPauseMs;
};

}  // namespace tern::io
