// --maildir / --mbox: messages are written by one writer thread, so loop
// threads never block on the disk. A session awaits its write (StoreAwait)
// before answering 250, so "250" means "the file is there" to a test.
// Writes are not fsynced: tern-sink measures senders, not disks.
#pragma once
#include <condition_variable>
#include <coroutine>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "mta/io/loop.h"
#include "mta/io/net.h"
#include "queue/result.h"
#include "tools/tern_sink/message_format.h"

namespace tern::sink {

class MessageStore {
 public:
  // Creates DIR/tmp, DIR/new and DIR/cur as needed.
  static Result<std::unique_ptr<MessageStore>> open_maildir(const std::string& dir, const std::string& hostname);
  // Opens FILE for appending (created if missing).
  static Result<std::unique_ptr<MessageStore>> open_mbox(const std::string& path);
  // Writes everything still queued, then stops the writer thread.
  ~MessageStore();
  MessageStore(const MessageStore&) = delete;
  MessageStore& operator=(const MessageStore&) = delete;

  using Done = std::function<void(bool ok)>;
  // Thread-safe. `done` runs on the writer thread once the message is written.
  void submit(Envelope env, std::string content, Done done);

 private:
  enum class Kind { maildir, mbox };
  struct Job {
    Envelope env;
    std::string content;
    Done done;
  };
  MessageStore(Kind kind, std::string path, std::string hostname, io::UniqueFd mbox);
  void run();
  bool write(const Job& job);
  bool write_maildir(const Job& job);

  const Kind kind_;
  const std::string path_;  // the Maildir or the mbox file
  const std::string hostname_;
  io::UniqueFd mbox_;
  uint64_t sequence_ = 0;  // writer thread only: makes Maildir names unique
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

// Awaits a write from a loop thread: the completion is posted back to the
// loop, so the session resumes on its own thread. Result: written or not.
struct StoreAwait {
  io::Loop& loop;
  MessageStore& store;
  Envelope env;
  std::string content;
  bool ok = false;
  std::coroutine_handle<> waiter{};

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    waiter = h;
    store.submit(std::move(env), std::move(content), [this](bool written) {
      loop.post([this, written] {
        ok = written;
        waiter.resume();
      });
    });
  }
  bool await_resume() const noexcept { return ok; }
};

}  // namespace tern::sink
