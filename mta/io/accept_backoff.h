// What an accept loop does when the process runs out of descriptors (or
// kernel memory). The kernel keeps the connection queued, so retrying at
// once fails again at once: a loop that re-arms immediately burns a CPU and
// writes a log line per attempt. Instead it pauses, 10 ms at first and
// doubling to 1 s while the shortage lasts; the first accept that works
// ends the episode. Whoever owns the loop reports the start and the end of
// an episode, never each attempt.
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
    unsigned pauses = 0;     // accepts that failed and were paused for
    int64_t duration_ms = 0;  // from the first failure to the accept that worked
  };

  bool paused() const { return pauses_ > 0; }

  // An accept failed with a shortage at `now_ms`: how long to wait before
  // the next one. paused() was false before the call when this starts an
  // episode.
  int64_t failed(int64_t now_ms) {
    if (pauses_ == 0) {
      since_ms_ = now_ms;
      next_pause_ms_ = kFirstPauseMs;
    }
    ++pauses_;
    const int64_t pause = next_pause_ms_;
    next_pause_ms_ = next_pause_ms_ * 2 > kMaxPauseMs ? kMaxPauseMs : next_pause_ms_ * 2;
    return pause;
  }

  // An accept worked at `now_ms`: the episode it ends, if one was going on.
  std::optional<Episode> succeeded(int64_t now_ms) {
    if (pauses_ == 0) return std::nullopt;
    Episode e{pauses_, now_ms - since_ms_};
    pauses_ = 0;
    return e;
  }

 private:
  unsigned pauses_ = 0;
  int64_t since_ms_ = 0;
  int64_t next_pause_ms_ = kFirstPauseMs;
};

}  // namespace tern::io
