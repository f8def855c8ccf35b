// ternctl user add|passwd|del|list: edits the user directory file.
//
// Works on the file alone (ternd need not run); a running ternd re-reads it
// on SIGHUP. Edits are serialized with flock(2) on the file's directory and
// written atomically: a temporary file in the same directory (mode 0600, the
// old file's owner when permitted), fsync, rename, fsync of the directory.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "mta/policy/user_directory.h"
#include "mta/smtp/address.h"
#include "mta/text.h"
#include "queue/result.h"

namespace tern::ctl {

// Called by ternctl.cpp's main with the words after "user".
int user_command(const std::string& users_file, const std::vector<std::string>& args);

namespace {

using policy::UserDirectory;

constexpr size_t kMaxPassword = 255;  // SASL PLAIN's field limit (RFC 4616)

int fail(const std::string& message) {
  fprintf(stderr, "ternctl: %s\n", message.c_str());
  return 1;
}

constexpr char kUserUsage[] =
    "usage: ternctl [--config FILE] user COMMAND\n"
    "  user add NAME [ADDRESS...]  add a user who may send as ADDRESSes; password from stdin\n"
    "  user passwd NAME      set a user's password (from stdin; prompted twice on a terminal)\n"
    "  user del NAME         remove a user\n"
    "  user list             users: name, active or locked, addresses\n"
    "The user commands edit auth.users_file (default ./var/users) without ternd;\n"
    "a running ternd re-reads it on SIGHUP.\n";

int usage_error(const char* message) {
  fprintf(stderr, "ternctl: %s\n", message);
  fputs(kUserUsage, stderr);
  return 2;
}

// --- Reading the password -------------------------------------------------

struct termios g_saved_termios;
volatile sig_atomic_t g_echo_off = 0;

void restore_echo_and_exit(int sig) {
  if (g_echo_off) tcsetattr(STDIN_FILENO, TCSANOW, &g_saved_termios);
  signal(sig, SIG_DFL);
  raise(sig);
}

// One line from stdin without its line end; false at EOF before any input
// or on a read error.
bool read_line(std::string& out) {
  out.clear();
  bool any = false;
  char c;
  for (;;) {
    const ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return any;
    any = true;
    if (c == '\n') break;
    if (out.size() > 4096) continue;  // far over the limit: stop storing, keep reading the line
    out += c;
  }
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return true;
}

Result<std::string> prompt_no_echo(const char* prompt) {
  fputs(prompt, stderr);
  fflush(stderr);
  if (tcgetattr(STDIN_FILENO, &g_saved_termios) != 0) return Error{concat({"terminal: ", strerror(errno)})};
  struct termios quiet = g_saved_termios;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ECHONL;
  signal(SIGINT, restore_echo_and_exit);
  signal(SIGTERM, restore_echo_and_exit);
  signal(SIGHUP, restore_echo_and_exit);
  g_echo_off = 1;
  if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0) {
    g_echo_off = 0;
    return Error{concat({"terminal: ", strerror(errno)})};
  }
  std::string line;
  const bool ok = read_line(line);
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
  g_echo_off = 0;
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  if (!ok) return Error{"no password given"};
  return line;
}

// From a terminal: twice without echo, both the same. Otherwise one line.
Result<std::string> read_password() {
  std::string password;
  if (isatty(STDIN_FILENO)) {
    auto first = prompt_no_echo("New password: ");
    if (!first.ok()) return first;
    auto second = prompt_no_echo("Repeat the password: ");
    if (!second.ok()) return second;
    const bool same = *first == *second;
    explicit_bzero(second->data(), second->size());
    if (!same) {
      explicit_bzero(first->data(), first->size());
      return Error{"the passwords do not match"};
    }
    password = std::move(*first);
  } else if (!read_line(password)) {
    return Error{"no password on standard input"};
  }
  if (password.empty()) return Error{"empty password"};
  if (password.size() > kMaxPassword) {
    explicit_bzero(password.data(), password.size());
    return Error{"password longer than 255 octets (the SASL PLAIN limit)"};
  }
  if (!smtp::valid_utf8(password) || password.find('\0') != std::string::npos) {
    explicit_bzero(password.data(), password.size());
    return Error{"password is not valid UTF-8 text"};
  }
  return password;
}

Result<std::string> new_hash() {
  auto password = read_password();
  if (!password.ok()) return Error{password.error()};
  auto hash = policy::hash_password(*password, "yescrypt");
  explicit_bzero(password->data(), password->size());
  return hash;
}

// --- The file ---------------------------------------------------------------

// Holds flock(LOCK_EX) on the directory for the edit.
class DirectoryLock {
 public:
  ~DirectoryLock() {
    if (fd_ >= 0) close(fd_);
  }
  Status lock(const std::string& dir) {
    fd_ = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) return Error{concat({dir, ": ", strerror(errno)})};
    while (flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) return Error{concat({dir, ": cannot lock: ", strerror(errno)})};
    }
    return {};
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

Status write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{strerror(errno)};
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status save(const std::string& path, int dir_fd, const UserDirectory& directory) {
  std::string tmp = path + ".tmpXXXXXX";
  const int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return Error{concat({"cannot create ", tmp, ": ", strerror(errno)})};
  auto cleanup = [&](const std::string& what) -> Status {
    const std::string message = concat({"cannot write ", tmp, ": ", what});
    close(fd);
    unlink(tmp.c_str());
    return Error{message};
  };
  if (fchmod(fd, 0600) != 0) return cleanup(strerror(errno));
  struct stat old;
  if (stat(path.c_str(), &old) == 0 && (old.st_uid != geteuid() || old.st_gid != getegid())) {
    // Keep the file readable by whoever ternd runs as (root editing ternd's
    // file); without the privilege the file becomes the editor's.
    if (fchown(fd, old.st_uid, old.st_gid) != 0 && errno != EPERM) return cleanup(strerror(errno));
  }
  if (auto w = write_all(fd, directory.serialize()); !w.ok()) return cleanup(w.error());
  if (fsync(fd) != 0) return cleanup(strerror(errno));
  if (close(fd) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return Error{concat({"cannot write ", tmp, ": ", strerror(err)})};
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return Error{concat({"cannot replace ", path, ": ", strerror(err)})};
  }
  if (fsync(dir_fd) != 0) return Error{concat({"cannot sync the directory of ", path, ": ", strerror(errno)})};
  return {};
}

// Loads under the lock, applies `edit`, saves.
template <typename Edit>
int edit_file(const std::string& path, Edit edit) {
  DirectoryLock lock;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (auto l = lock.lock(parent.empty() ? std::string(".") : parent.string()); !l.ok()) return fail(l.error());
  auto loaded = UserDirectory::load(path);
  if (!loaded.ok()) return fail(loaded.error());
  UserDirectory directory = std::move(*loaded);
  if (Status s = edit(directory); !s.ok()) return fail(s.error());
  if (Status s = save(path, lock.fd(), directory); !s.ok()) return fail(s.error());
  return 0;
}

constexpr char kReload[] = "; ternd picks this up on SIGHUP\n";

int add(const std::string& path, const std::vector<std::string>& args) {
  if (args.size() < 2) return usage_error("user add: NAME missing");
  const std::string& name = args[1];
  const std::vector<std::string> addresses(args.begin() + 2, args.end());
  if (!policy::valid_user_name(name))
    return fail(concat({"invalid user name ", tern::quoted(name), " (1..64 of a-z 0-9 . _ -)"}));
  for (const auto& a : addresses)
    if (!policy::valid_user_address(a)) return fail(concat({"invalid address ", tern::quoted(a)}));
  // Checked before asking for the password; checked again under the lock.
  if (auto current = UserDirectory::load(path); !current.ok()) {
    return fail(current.error());
  } else if (current->find(name) != nullptr) {
    return fail(concat({"user ", name, " exists"}));
  }
  auto hash = new_hash();
  if (!hash.ok()) return fail(hash.error());
  const int rc = edit_file(path, [&](UserDirectory& d) { return d.add_user(name, *hash, addresses); });
  if (rc == 0) printf("user %s added to %s%s", name.c_str(), path.c_str(), kReload);
  return rc;
}

int passwd(const std::string& path, const std::vector<std::string>& args) {
  if (args.size() != 2) return usage_error("usage: user passwd NAME");
  const std::string& name = args[1];
  if (auto current = UserDirectory::load(path); !current.ok()) {
    return fail(current.error());
  } else if (current->find(name) == nullptr) {
    return fail(concat({"no user ", name}));
  }
  auto hash = new_hash();
  if (!hash.ok()) return fail(hash.error());
  const int rc = edit_file(path, [&](UserDirectory& d) { return d.set_hash(name, *hash); });
  if (rc == 0) printf("password of %s changed%s", name.c_str(), kReload);
  return rc;
}

int del(const std::string& path, const std::vector<std::string>& args) {
  if (args.size() != 2) return usage_error("usage: user del NAME");
  const std::string& name = args[1];
  const int rc = edit_file(path, [&](UserDirectory& d) { return d.remove_user(name); });
  if (rc == 0) printf("user %s removed from %s%s", name.c_str(), path.c_str(), kReload);
  return rc;
}

int list(const std::string& path, const std::vector<std::string>& args) {
  if (args.size() != 1) return usage_error("usage: user list");
  auto loaded = UserDirectory::load(path);
  if (!loaded.ok()) return fail(loaded.error());
  for (const policy::User* u : loaded->users()) {
    std::string line = u->name;
    line += u->locked() ? " locked" : " active";
    for (const auto& a : u->addresses) {
      line += ' ';
      line += a;
    }
    line += '\n';
    fputs(line.c_str(), stdout);
  }
  return 0;
}

}  // namespace

int user_command(const std::string& users_file, const std::vector<std::string>& args) {
  if (args.empty()) return usage_error("user: add, passwd, del or list");
  if (users_file.empty()) return fail("auth.users_file is empty: no user directory configured");
  const std::string& sub = args[0];
  if (sub == "add") return add(users_file, args);
  if (sub == "passwd") return passwd(users_file, args);
  if (sub == "del") return del(users_file, args);
  if (sub == "list") return list(users_file, args);
  return usage_error("user: add, passwd, del or list");
}

}  // namespace tern::ctl
