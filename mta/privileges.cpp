#include "mta/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "mta/log.h"

namespace tern {

namespace {

std::string errno_text(const char* what) { return std::string(what) + ": " + strerror(errno); }

// getpwnam_r/getgrnam_r with a buffer that grows until the entry fits.
template <typename Entry, typename Lookup>
std::optional<Entry> lookup(const std::string& name, Lookup fn) {
  std::vector<char> buffer(1024);
  for (;;) {
    Entry entry{};
    Entry* found = nullptr;
    int rc = fn(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE && buffer.size() < (1u << 20)) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (rc != 0 || !found) return std::nullopt;
    return entry;
  }
}

}  // namespace

Result<std::optional<ServiceAccount>> service_account(const Config::Server& server) {
  if (server.user.empty()) return std::optional<ServiceAccount>();
  auto pw = lookup<passwd>(server.user, getpwnam_r);
  if (!pw) return Error{"server.user: no such user " + server.user};
  ServiceAccount account{server.user, server.group, pw->pw_uid, pw->pw_gid};
  if (!server.group.empty()) {
    auto gr = lookup<group>(server.group, getgrnam_r);
    if (!gr) return Error{"server.group: no such group " + server.group};
    account.gid = gr->gr_gid;
  } else if (auto gr = getgrgid(pw->pw_gid)) {
    account.group = gr->gr_name;
  }
  if (geteuid() != 0 && (geteuid() != account.uid || getegid() != account.gid)) {
    return Error{"server.user = \"" + server.user + "\": ternd must start as root to become it (it runs as uid " +
                 std::to_string(geteuid()) + ")"};
  }
  return std::optional<ServiceAccount>(account);
}

Status hand_over(const std::string& path, const ServiceAccount& account) {
  struct stat top {};
  if (stat(path.c_str(), &top) != 0) return Error{errno_text(("stat " + path).c_str())};
  // A tree whose top is the account's was handed over at an earlier start:
  // a Maildir tree can hold millions of files, not to be walked each time.
  if (top.st_uid == account.uid && top.st_gid == account.gid) return {};
  auto give = [&](const std::filesystem::path& p) -> Status {
    struct stat st {};
    if (lstat(p.c_str(), &st) != 0) return Error{errno_text(("stat " + p.string()).c_str())};
    if (st.st_uid == account.uid && st.st_gid == account.gid) return {};
    if (lchown(p.c_str(), account.uid, account.gid) != 0) return Error{errno_text(("chown " + p.string()).c_str())};
    return {};
  };
  if (Status s = give(path); !s) return s;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (Status s = give(it->path()); !s) return s;
  }
  if (ec) return Error{"reading " + path + ": " + ec.message()};
  return {};
}

Status drop_privileges(const ServiceAccount& account) {
  if (getuid() == account.uid && geteuid() == account.uid && getgid() == account.gid && getegid() == account.gid) {
    return {};
  }
  // glibc applies each of these to every thread of the process.
  gid_t groups[] = {account.gid};
  if (setgroups(1, groups) != 0) return Error{errno_text("setgroups")};
  if (setresgid(account.gid, account.gid, account.gid) != 0) return Error{errno_text("setresgid")};
  if (setresuid(account.uid, account.uid, account.uid) != 0) return Error{errno_text("setresuid")};
  // Leaving uid 0 clears the capability sets; nothing exec'd may gain more.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Error{errno_text("prctl(PR_SET_NO_NEW_PRIVS)")};
  if (account.uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) return Error{"root could be regained after dropping it"};
  log::event("privileges_dropped", {{"user", account.user}, {"uid", account.uid}, {"group", account.group},
                                    {"gid", account.gid}});
  return {};
}

Status narrow_to_owner(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Error{errno_text(("stat " + path).c_str())};
  mode_t mode = st.st_mode & 07777;
  if ((mode & 077) == 0) return {};
  if (chmod(path.c_str(), mode & ~mode_t{077}) != 0) return Error{errno_text(("chmod " + path).c_str())};
  char was[8];
  char now[8];
  snprintf(was, sizeof was, "%04o", static_cast<unsigned>(mode));
  snprintf(now, sizeof now, "%04o", static_cast<unsigned>(mode & ~mode_t{077}));
  log::event("permissions_tightened", {{"path", path}, {"was", was}, {"now", now}});
  return {};
}

Status private_directory(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    if (!std::filesystem::is_directory(path, ec)) return Error{path + " is not a directory"};
    return narrow_to_owner(path);
  }
  std::filesystem::create_directories(path, ec);
  if (ec) return Error{"creating " + path + ": " + ec.message()};
  if (chmod(path.c_str(), 0700) != 0) return Error{errno_text(("chmod " + path).c_str())};
  return {};
}

}  // namespace tern
