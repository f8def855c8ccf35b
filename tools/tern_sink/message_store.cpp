#include "tools/tern_sink/message_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "queue/thread_name.h"
#include "tools/loadkit/bench_header.h"

namespace tern::sink {
namespace {

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

MessageStore::MessageStore(Kind kind, std::string path, std::string hostname, io::UniqueFd mbox)
    : kind_(kind), path_(std::move(path)), hostname_(std::move(hostname)), mbox_(std::move(mbox)) {
  thread_ = std::thread([this] {
    name_this_thread("sink-store");
    run();
  });
}

Result<std::unique_ptr<MessageStore>> MessageStore::open_maildir(const std::string& dir, const std::string& hostname) {
  for (const char* sub : {"tmp", "new", "cur"}) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(dir) / sub, ec);
    if (ec) return Error{"cannot create maildir " + dir + "/" + sub + ": " + ec.message()};
  }
  return std::unique_ptr<MessageStore>(new MessageStore(Kind::maildir, dir, hostname, io::UniqueFd{}));
}

Result<std::unique_ptr<MessageStore>> MessageStore::open_mbox(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Error{"cannot open mbox " + path + ": " + std::strerror(errno)};
  return std::unique_ptr<MessageStore>(new MessageStore(Kind::mbox, path, "", io::UniqueFd(fd)));
}

MessageStore::~MessageStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void MessageStore::submit(Envelope env, std::string content, Done done) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(Job{std::move(env), std::move(content), std::move(done)});
  }
  wake_.notify_one();
}

void MessageStore::run() {
  std::deque<Job> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and everything queued is written
      batch.swap(jobs_);
    }
    for (auto& job : batch) job.done(write(job));
    batch.clear();
  }
}

bool MessageStore::write(const Job& job) {
  if (kind_ == Kind::maildir) return write_maildir(job);
  return write_all(mbox_.get(), format_mbox_message(job.env, job.content, loadkit::unix_micros() / 1'000'000));
}

bool MessageStore::write_maildir(const Job& job) {
  // Maildir delivery: write under tmp/, then rename into new/, so a reader
  // of new/ never sees a partial message.
  std::string name = maildir_file_name(loadkit::unix_micros(), static_cast<long>(getpid()), sequence_++, hostname_);
  std::string tmp = path_ + "/tmp/" + name;
  io::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) return false;
  bool ok = write_all(fd.get(), format_maildir_message(job.env, job.content));
  fd.reset();
  if (ok && ::rename(tmp.c_str(), (path_ + "/new/" + name).c_str()) == 0) return true;
  ::unlink(tmp.c_str());
  return false;
}

}  // namespace tern::sink
