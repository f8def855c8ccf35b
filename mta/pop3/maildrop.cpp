#include "mta/pop3/maildrop.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "mta/text.h"

namespace tern::pop3 {

namespace {

constexpr size_t kMaxUid = 70;  // RFC 1939 §7

std::string errno_text(std::string_view what, int error) {
  return concat({what, ": ", std::strerror(error)});
}

// Closes a file descriptor at scope end.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// The names in a directory, except "." entries (Maildir: hidden files are
// not messages). A missing directory has none.
Result<std::vector<std::string>> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return names;
    return Error{errno_text(dir, errno)};
  }
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    errno = 0;
  }
  const int error = errno;
  ::closedir(d);
  if (error != 0) return Error{errno_text(dir, error)};
  return names;
}

// Reads a whole regular file. nullopt-like: returns an Error; `*not_regular`
// set when the path is not a regular file (skipped, not an error).
Result<std::string> read_file(const std::string& path, bool* not_regular) {
  if (not_regular) *not_regular = false;
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
  if (f.fd < 0) return Error{errno_text(path, errno)};
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return Error{errno_text(path, errno)};
  if (!S_ISREG(st.st_mode)) {
    if (not_regular) *not_regular = true;
    return Error{concat({path, ": not a regular file"})};
  }
  std::string data;
  data.reserve(static_cast<size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{errno_text(path, errno)};
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

// Counts the CRLF octets of a file without keeping it in memory.
Result<uint64_t> file_crlf_octets(const std::string& path, bool* not_regular) {
  *not_regular = false;
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
  if (f.fd < 0) return Error{errno_text(path, errno)};
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return Error{errno_text(path, errno)};
  if (!S_ISREG(st.st_mode)) {
    *not_regular = true;
    return Error{concat({path, ": not a regular file"})};
  }
  uint64_t n = 0;
  char prev = 0;
  bool any = false;
  char buf[65536];
  for (;;) {
    const ssize_t got = ::read(f.fd, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR) continue;
      return Error{errno_text(path, errno)};
    }
    if (got == 0) break;
    any = true;
    for (ssize_t i = 0; i < got; ++i) {
      const char c = buf[i];
      ++n;
      if (c == '\n' && prev != '\r') ++n;
      prev = c;
    }
  }
  if (any && prev != '\n') n += 2;
  return n;
}

std::string_view unique_part(std::string_view file_name) {
  return file_name.substr(0, file_name.find(':'));
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// The key for natural order: runs of digits compare as numbers, so
// "1.M5P1" comes before "1.M40P1" (the delivery agent does not pad
// microseconds) and names keep their time order when the seconds gain a
// digit. Each digit run becomes '0', its length (without leading zeros) in
// 4 digits, then the digits; other octets stay. Comparing the keys as plain
// strings (then the names) is a total order.
std::string order_key(std::string_view name) {
  std::string key;
  size_t i = 0;
  while (i < name.size()) {
    if (!is_digit(name[i])) {
      key += name[i++];
      continue;
    }
    size_t end = i;
    while (end < name.size() && is_digit(name[end])) ++end;
    std::string_view run = name.substr(i, end - i);
    while (run.size() > 1 && run.front() == '0') run.remove_prefix(1);
    std::string len = std::to_string(std::min<size_t>(run.size(), 9999));
    key += '0';
    key.append(4 - len.size(), '0');
    key += len;
    key += run;
    i = end;
  }
  return key;
}

}  // namespace

std::string Maildrop::uid_for_name(std::string_view file_name) {
  const std::string_view unique = unique_part(file_name);
  bool clean = !unique.empty() && unique.size() <= kMaxUid;
  for (unsigned char c : unique)
    if (c < 0x21 || c > 0x7E) clean = false;
  if (clean) return std::string(unique);
  // A readable prefix and a hash of the whole unique part: stable, and
  // distinct for distinct names (but for hash collisions).
  std::string out;
  for (unsigned char c : unique.substr(0, kMaxUid - 17)) out += (c < 0x21 || c > 0x7E) ? '_' : static_cast<char>(c);
  out += '-';
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t h = fnv1a64(unique);
  for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(h >> shift) & 0xF];
  return out;
}

Result<Maildrop> Maildrop::open(const std::string& root, const std::string& user) {
  if (user.empty() || user == "." || user == ".." || user.find('/') != std::string::npos ||
      user.find('\0') != std::string::npos)
    return Error{concat({"invalid mailbox name ", quoted(user)})};
  const std::string dir = concat({root, "/", user});
  const std::string new_dir = dir + "/new";
  const std::string cur_dir = dir + "/cur";
  Maildrop drop;

  // new/ -> cur/ with the info suffix; a message that cannot be moved is
  // served from new/ (its uid is the same either way).
  auto fresh = list_dir(new_dir);
  if (!fresh) return Error{fresh.error()};
  std::vector<std::pair<std::string, std::string>> files;  // (path, file name)
  bool cur_checked = false;
  for (const std::string& name : fresh.value()) {
    const std::string from = concat({new_dir, "/", name});
    const std::string target = name.find(':') == std::string::npos ? name + ":2," : name;
    const std::string to = concat({cur_dir, "/", target});
    if (!cur_checked) {
      cur_checked = true;
      if (::mkdir(cur_dir.c_str(), 0700) != 0 && errno != EEXIST) return Error{errno_text(cur_dir, errno)};
    }
    // link + unlink, never rename: a file of the same name in cur/ is kept.
    if (::link(from.c_str(), to.c_str()) == 0) {
      ::unlink(from.c_str());
      files.emplace_back(to, target);
    } else if (errno == ENOENT) {
      continue;  // gone meanwhile
    } else {
      files.emplace_back(from, name);
    }
  }
  auto current = list_dir(cur_dir);
  if (!current) return Error{current.error()};
  std::set<std::string> seen_paths;
  for (const auto& f : files) seen_paths.insert(f.first);
  for (const std::string& name : current.value()) {
    std::string path = concat({cur_dir, "/", name});
    if (seen_paths.count(path) == 0) files.emplace_back(std::move(path), name);
  }

  for (auto& [path, name] : files) {
    bool not_regular = false;
    auto octets = file_crlf_octets(path, &not_regular);
    if (!octets) {
      if (not_regular) continue;
      // Vanished since the listing (another client expunged it): not ours.
      if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) continue;
      return Error{octets.error()};
    }
    Message m;
    m.path = path;
    m.name = std::string(unique_part(name));
    m.key = order_key(m.name);
    m.uid = uid_for_name(name);
    m.octets = octets.value();
    drop.messages_.push_back(std::move(m));
  }
  std::sort(drop.messages_.begin(), drop.messages_.end(), [](const Message& a, const Message& b) {
    if (a.key != b.key) return a.key < b.key;
    if (a.name != b.name) return a.name < b.name;
    return a.path < b.path;
  });
  // Unique ids must be unique within the session.
  std::set<std::string> uids;
  for (Message& m : drop.messages_) {
    if (uids.insert(m.uid).second) continue;
    const std::string base = m.uid.substr(0, kMaxUid - 8);
    for (unsigned i = 2;; ++i) {
      std::string candidate = concat({base, "~", std::to_string(i)});
      if (uids.insert(candidate).second) {
        m.uid = std::move(candidate);
        break;
      }
    }
  }
  return drop;
}

const Maildrop::Message* Maildrop::get(size_t n) const {
  if (n < 1 || n > messages_.size()) return nullptr;
  const Message& m = messages_[n - 1];
  return m.deleted ? nullptr : &m;
}

size_t Maildrop::count() const {
  size_t n = 0;
  for (const Message& m : messages_) n += m.deleted ? 0 : 1;
  return n;
}

uint64_t Maildrop::total_octets() const {
  uint64_t n = 0;
  for (const Message& m : messages_) n += m.deleted ? 0 : m.octets;
  return n;
}

size_t Maildrop::deleted_count() const {
  return messages_.size() - count();
}

bool Maildrop::exists(size_t n) const {
  return get(n) != nullptr;
}

std::optional<uint64_t> Maildrop::octets(size_t n) const {
  const Message* m = get(n);
  if (!m) return std::nullopt;
  return m->octets;
}

std::optional<std::string> Maildrop::uid(size_t n) const {
  const Message* m = get(n);
  if (!m) return std::nullopt;
  return m->uid;
}

Result<std::string> Maildrop::retrieve(size_t n, std::optional<size_t> top_lines) const {
  const Message* m = get(n);
  if (!m) return Error{"no such message"};
  auto data = read_file(m->path, nullptr);
  if (!data) return Error{data.error()};
  const std::string_view in = data.value();
  std::string out;
  out.reserve(in.size() + in.size() / 32 + 8);
  bool in_header = true;
  size_t body_lines = 0;
  size_t pos = 0;
  while (pos < in.size()) {
    if (top_lines && !in_header && body_lines >= *top_lines) break;
    const size_t lf = in.find('\n', pos);
    std::string_view line;
    if (lf == std::string_view::npos) {
      line = in.substr(pos);  // the last line has no line end: one is added
      pos = in.size();
    } else {
      line = in.substr(pos, lf - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      pos = lf + 1;
    }
    if (!line.empty() && line.front() == '.') out += '.';
    out += line;
    out += "\r\n";
    if (in_header) {
      if (line.empty()) in_header = false;
    } else {
      ++body_lines;
    }
  }
  out += ".\r\n";
  return out;
}

bool Maildrop::mark_deleted(size_t n) {
  if (!get(n)) return false;
  messages_[n - 1].deleted = true;
  return true;
}

void Maildrop::reset() {
  for (Message& m : messages_) m.deleted = false;
}

Result<size_t> Maildrop::commit() {
  size_t removed = 0;
  std::string errors;
  for (Message& m : messages_) {
    if (!m.deleted) continue;
    const int error = ::unlink(m.path.c_str()) == 0 ? 0 : errno;
    if (error == 0 || error == ENOENT) {
      ++removed;
      continue;
    }
    if (!errors.empty()) errors += "; ";
    errors += errno_text(m.path, error);
  }
  if (!errors.empty()) return Error{concat({std::to_string(removed), " removed; ", errors})};
  return removed;
}

}  // namespace tern::pop3
