#include "mta/local/maildir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>

#include "mta/text.h"

namespace tern::local {
namespace {

std::atomic<uint64_t> g_sequence{0};

std::string errno_text(int err) {
  return std::strerror(err);
}

MaildirResult failed(std::string_view what, std::string_view path, int err) {
  return {MaildirResult::Kind::failed, {}, concat({what, " ", path, ": ", errno_text(err)})};
}

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now; the error of close(2), or 0.
  int close() {
    int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

// fsync of a directory; 0 or the errno.
int sync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return errno;
  if (::fsync(fd.get()) != 0) return errno;
  return 0;
}

// mkdir -p with mode 0700; the parent of each directory created is synced.
// 0 or the errno (with `where` the directory that failed).
int make_dirs(const std::string& path, std::string& where) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return 0;
    where = path;
    return ENOTDIR;
  }
  if (errno != ENOENT) {
    where = path;
    return errno;
  }
  const std::string parent = std::filesystem::path(path).parent_path().string();
  if (!parent.empty() && parent != path) {
    if (int err = make_dirs(parent, where); err != 0) return err;
  }
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    where = path;
    return errno;
  }
  if (int err = sync_dir(parent); err != 0) {
    where = parent;
    return err;
  }
  return 0;
}

// Bytes of the regular files in `dir`; 0 when it cannot be read.
uint64_t dir_bytes(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  uint64_t total = 0;
  const int dfd = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    struct stat st;
    if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
      total += static_cast<uint64_t>(st.st_size);
  }
  ::closedir(d);
  return total;
}

// CRLF → LF over a sequence of pieces (a CRLF may span two pieces).
class LfConverter {
 public:
  template <typename Emit>
  void feed(std::string_view data, Emit emit) {
    size_t start = 0;
    if (pending_cr_ && !data.empty()) {
      pending_cr_ = false;
      if (data[0] != '\n') emit(std::string_view("\r"));
    }
    for (size_t i = 0; i < data.size(); ++i) {
      if (data[i] != '\r') continue;
      if (i + 1 == data.size()) {
        emit(data.substr(start, i - start));
        pending_cr_ = true;
        return;
      }
      if (data[i + 1] == '\n') {
        emit(data.substr(start, i - start));
        start = i + 1;  // the LF
      }
    }
    emit(data.substr(start));
  }
  template <typename Emit>
  void finish(Emit emit) {
    if (pending_cr_) emit(std::string_view("\r"));
    pending_cr_ = false;
  }

 private:
  bool pending_cr_ = false;
};

uint64_t converted_size(std::string_view prefix, std::string_view content) {
  uint64_t size = 0;
  auto count = [&](std::string_view piece) { size += piece.size(); };
  LfConverter c;
  c.feed(prefix, count);
  c.feed(content, count);
  c.finish(count);
  return size;
}

// Buffered writes to one file descriptor; the first error is kept.
class Writer {
 public:
  explicit Writer(int fd) : fd_(fd) { buffer_.reserve(kBuffer); }
  void operator()(std::string_view data) {
    if (err_ != 0) return;
    if (buffer_.size() + data.size() > kBuffer) flush();
    if (data.size() >= kBuffer) {
      write_all(data);
    } else {
      buffer_.append(data);
    }
  }
  int flush() {
    if (err_ == 0 && !buffer_.empty()) write_all(buffer_);
    buffer_.clear();
    return err_;
  }

 private:
  static constexpr size_t kBuffer = size_t{64} * 1024;

  void write_all(std::string_view data) {
    while (!data.empty() && err_ == 0) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        err_ = errno;
      } else if (n == 0) {
        err_ = EIO;
      } else {
        data.remove_prefix(static_cast<size_t>(n));
      }
    }
  }

  int fd_;
  int err_ = 0;
  std::string buffer_;
};

std::string local_hostname(std::string_view hostname) {
  if (!hostname.empty()) return std::string(hostname);
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

int64_t now_micros() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1'000;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool delivered_to_matches(std::string_view field, std::string_view address) {
  const size_t colon = field.find(':');
  if (colon == std::string_view::npos) return false;
  if (!ascii_iequals(trim(field.substr(0, colon)), "Delivered-To")) return false;
  std::string_view value = trim(field.substr(colon + 1));
  if (value.size() >= 2 && value.front() == '<' && value.back() == '>') value = trim(value.substr(1, value.size() - 2));
  return ascii_iequals(value, address);
}

}  // namespace

bool valid_maildir_user(std::string_view user) {
  if (user.empty() || user.size() > 64 || user.front() == '.') return false;
  for (char c : user) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string maildir_file_name(int64_t unix_us, long pid, uint64_t sequence, std::string_view hostname) {
  std::string name = std::to_string(unix_us / 1'000'000);
  name += ".M";
  name += std::to_string(unix_us % 1'000'000);
  name += 'P';
  name += std::to_string(pid);
  name += 'Q';
  name += std::to_string(sequence);
  name += '.';
  for (char c : hostname) name += (c == '/' || c == ':') ? '_' : c;
  return name;
}

uint64_t maildir_usage(const std::string& root, const std::string& user) {
  if (!valid_maildir_user(user)) return 0;
  const std::string dir = concat({root, "/", user});
  return dir_bytes(concat({dir, "/new"})) + dir_bytes(concat({dir, "/cur"}));
}

MaildirResult deliver_to_maildir(const std::string& root, const std::string& user, std::string_view prefix_headers,
                                 std::string_view content, uint64_t quota, std::string_view hostname) {
  if (!valid_maildir_user(user)) {
    return {MaildirResult::Kind::failed, {}, concat({"invalid mailbox name ", tern::quoted(user)})};
  }
  if (root.empty()) return {MaildirResult::Kind::failed, {}, "no maildir root"};
  const std::string dir = concat({root, "/", user});
  const std::string tmp_dir = concat({dir, "/tmp"});
  const std::string new_dir = concat({dir, "/new"});
  for (const char* sub : {"tmp", "new", "cur"}) {
    std::string where;
    if (int err = make_dirs(concat({dir, "/", sub}), where); err != 0) return failed("cannot create", where, err);
  }

  const uint64_t size = converted_size(prefix_headers, content);
  if (quota > 0) {
    const uint64_t usage = maildir_usage(root, user);
    if (usage + size > quota) {
      return {MaildirResult::Kind::over_quota,
              {},
              concat({"mailbox ", user, " over quota (", std::to_string(usage), " + ", std::to_string(size), " > ",
                      std::to_string(quota), " bytes)"})};
    }
  }

  const std::string host = local_hostname(hostname);
  std::string name, tmp_path;
  int fd = -1;
  for (int attempt = 0; attempt < 3 && fd < 0; ++attempt) {
    name = maildir_file_name(now_micros(), static_cast<long>(::getpid()), g_sequence.fetch_add(1), host);
    tmp_path = concat({tmp_dir, "/", name});
    fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) return failed("cannot create", tmp_path, errno);
  Fd file(fd);

  auto fail_removing = [&](std::string_view what, std::string_view path, int err) {
    ::unlink(tmp_path.c_str());
    return failed(what, path, err);
  };

  Writer writer(file.get());
  LfConverter lf;
  lf.feed(prefix_headers, std::ref(writer));
  lf.feed(content, std::ref(writer));
  lf.finish(std::ref(writer));
  if (int err = writer.flush(); err != 0) return fail_removing("cannot write", tmp_path, err);
  if (::fsync(file.get()) != 0) return fail_removing("cannot sync", tmp_path, errno);
  if (int err = file.close(); err != 0) return fail_removing("cannot close", tmp_path, err);

  std::string new_path = concat({new_dir, "/", name});
  if (::link(tmp_path.c_str(), new_path.c_str()) == 0) {
    ::unlink(tmp_path.c_str());  // a leftover in tmp/ is harmless
  } else if (errno == EEXIST) {
    return fail_removing("cannot link", new_path, EEXIST);
  } else if (::rename(tmp_path.c_str(), new_path.c_str()) != 0) {
    return fail_removing("cannot move into", new_path, errno);
  }
  if (int err = sync_dir(new_dir); err != 0) return failed("cannot sync", new_dir, err);
  return {MaildirResult::Kind::delivered, std::move(new_path), {}};
}

bool delivered_to_present(std::string_view content, std::string_view address) {
  std::string field;  // the current field, unfolded
  bool found = false;
  auto finish_field = [&] {
    if (!field.empty() && delivered_to_matches(field, address)) found = true;
    field.clear();
  };
  while (!content.empty() && !found) {
    const size_t lf = content.find('\n');
    std::string_view line = content.substr(0, lf);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty()) break;  // end of the header section
    if (line.front() == ' ' || line.front() == '\t') {
      field += line;  // a continuation: unfolding removes only the line break
    } else {
      finish_field();
      field.assign(line);
    }
    if (lf == std::string_view::npos) break;
    content.remove_prefix(lf + 1);
  }
  finish_field();
  return found;
}

}  // namespace tern::local
