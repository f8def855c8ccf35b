#include "mta/policy/user_directory.h"

#include <crypt.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <cerrno>
#include <variant>

#include "mta/smtp/address.h"
#include "mta/text.h"

namespace tern::policy {

namespace {

// A fixed yescrypt hash (default cost) that no password is known to match:
// unknown and locked users are checked against it so that they cost as much
// time as a real user.
constexpr char kDummyHash[] = "$y$j9T$cPlkrmIe/aUT1edyF7Gr2.$5GY6ZNH3nMScxMrB0S6AWkgHYey5CGwuad2QhAdx4EB";

constexpr size_t kMaxNameLength = 64;

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

Error line_error(size_t line, std::string_view what) {
  return Error{concat({"line ", std::to_string(line), ": ", what})};
}

bool valid_target(std::string_view target) {
  return target.find('@') != std::string_view::npos ? valid_user_address(target) : valid_user_name(target);
}

// Constant time in the contents (not the lengths, which are public: the
// stored hash's length follows from its scheme).
bool equal_constant_time(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = b.size();
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

// crypt_rn of password with setting; "" when it fails.
std::string run_crypt(const std::string& password, const char* setting) {
  struct crypt_data data;
  memset(&data, 0, sizeof data);
  const char* out = crypt_rn(password.c_str(), setting, &data, sizeof data);
  std::string result;
  if (out != nullptr && out[0] != '*') result = out;
  explicit_bzero(&data, sizeof data);
  return result;
}

std::string user_line(const User& u) {
  std::string line = "user ";
  line += u.name;
  line += ' ';
  line += u.hash;
  for (const auto& a : u.addresses) {
    line += ' ';
    line += a;
  }
  return line;
}

std::string alias_line(const Alias& a) {
  std::string line = "alias ";
  line += a.address;
  for (const auto& t : a.targets) {
    line += ' ';
    line += t;
  }
  return line;
}

// Checks a user's addresses: each valid, none twice. "" when fine.
std::string check_addresses(const std::vector<std::string>& addresses) {
  for (size_t i = 0; i < addresses.size(); ++i) {
    if (!valid_user_address(addresses[i])) return concat({"invalid address ", quoted(addresses[i])});
    for (size_t j = 0; j < i; ++j)
      if (ascii_iequals(addresses[i], addresses[j])) return concat({"address listed twice: ", addresses[i]});
  }
  return {};
}

}  // namespace

bool valid_user_name(std::string_view name) {
  // Names are Maildir directory names too: never ".", "..", or hidden.
  if (name.empty() || name.size() > kMaxNameLength || name.front() == '.') return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_user_hash(std::string_view hash) {
  if (hash == "!") return true;
  if (hash.rfind("$y$", 0) != 0 && hash.rfind("$6$", 0) != 0) return false;
  if (hash.size() <= 3 || hash.size() >= CRYPT_OUTPUT_SIZE) return false;
  // crypt(3) output alphabet, plus "rounds=N" and yescrypt parameters.
  for (const char c : hash) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '/' || c == '$' || c == '=' || c == ',';
    if (!ok) return false;
  }
  return true;
}

bool valid_user_address(std::string_view address) {
  if (address.empty() || address.size() > 254) return false;
  std::string path;
  path.reserve(address.size() + 2);
  path += '<';
  path += address;
  path += '>';
  const auto parsed = smtp::parse_path(path, false, "5.1.3");
  const auto* a = std::get_if<smtp::Address>(&parsed);
  return a != nullptr && !a->local_part.empty() && !a->domain.empty();
}

Result<UserDirectory> UserDirectory::parse(std::string_view text) {
  UserDirectory d;
  size_t number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!smtp::valid_utf8(line)) return line_error(number, "not UTF-8");
    for (const char c : line) {
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return line_error(number, "control character");
    }
    const auto fields = split_fields(line);
    if (fields.empty() || fields[0][0] == '#') {
      d.lines_.push_back({Line::Kind::verbatim, std::string(line)});
      continue;
    }
    if (fields[0] == "user") {
      if (fields.size() < 3) return line_error(number, "expected: user NAME HASH [ADDRESS...]");
      if (!valid_user_name(fields[1]))
        return line_error(number, concat({"invalid user name ", quoted(fields[1]), " (1..64 of a-z 0-9 . _ -)"}));
      if (!valid_user_hash(fields[2]))
        return line_error(number, concat({"user ", fields[1],
                                          ": the hash must be $y$... (yescrypt), "
                                          "$6$... (SHA-512) or ! (locked)"}));
      if (d.users_.count(fields[1]) != 0) return line_error(number, concat({"user ", fields[1], " defined twice"}));
      User u{std::string(fields[1]), std::string(fields[2]), {}};
      for (size_t i = 3; i < fields.size(); ++i) u.addresses.emplace_back(fields[i]);
      if (auto e = check_addresses(u.addresses); !e.empty())
        return line_error(number, concat({"user ", u.name, ": ", e}));
      d.lines_.push_back({Line::Kind::user, u.name});
      std::string key = u.name;
      d.users_.emplace(std::move(key), std::move(u));
    } else if (fields[0] == "alias") {
      if (fields.size() < 3) return line_error(number, "expected: alias ADDRESS TARGET...");
      if (!valid_user_address(fields[1]))
        return line_error(number, concat({"invalid alias address ", quoted(fields[1])}));
      std::string key = ascii_lower(fields[1]);
      if (d.aliases_.count(key) != 0) return line_error(number, concat({"alias ", fields[1], " defined twice"}));
      Alias a{std::string(fields[1]), {}};
      for (size_t i = 2; i < fields.size(); ++i) {
        if (!valid_target(fields[i]))
          return line_error(number, concat({"alias ", fields[1], ": invalid target ", quoted(fields[i])}));
        a.targets.emplace_back(fields[i]);
      }
      d.lines_.push_back({Line::Kind::alias, key});
      d.aliases_.emplace(std::move(key), std::move(a));
    } else {
      return line_error(number, concat({"unknown entry ", quoted(fields[0]), " (expected user or alias)"}));
    }
  }
  return d;
}

Result<UserDirectory> UserDirectory::load(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return UserDirectory{};
    return Error{concat({path, ": ", strerror(errno)})};
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return Error{concat({path, ": ", strerror(err)})};
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  auto parsed = parse(text);
  if (!parsed.ok()) return Error{concat({path, ": ", parsed.error()})};
  return parsed;
}

std::string UserDirectory::serialize() const {
  std::string out;
  for (const auto& line : lines_) {
    switch (line.kind) {
      case Line::Kind::verbatim:
        out += line.text;
        break;
      case Line::Kind::user:
        out += user_line(users_.find(line.text)->second);
        break;
      case Line::Kind::alias:
        out += alias_line(aliases_.find(line.text)->second);
        break;
    }
    out += '\n';
  }
  return out;
}

const User* UserDirectory::find(std::string_view name) const {
  const auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

std::vector<const User*> UserDirectory::users() const {
  std::vector<const User*> out;
  out.reserve(users_.size());
  for (const auto& [name, user] : users_) out.push_back(&user);
  return out;
}

bool UserDirectory::verify(std::string_view name, std::string_view password) const {
  const User* u = find(name);
  const bool usable = u != nullptr && !u->locked() && password.find('\0') == std::string_view::npos;
  const std::string& stored = usable ? u->hash : std::string(kDummyHash);
  std::string pw(password);
  const std::string computed = run_crypt(pw, stored.c_str());
  explicit_bzero(pw.data(), pw.size());
  const bool match = !computed.empty() && equal_constant_time(computed, stored);
  return usable && match;
}

bool UserDirectory::owns(std::string_view user, std::string_view address) const {
  const User* u = find(user);
  if (u == nullptr) return false;
  for (const auto& a : u->addresses)
    if (ascii_iequals(a, address)) return true;
  const auto it = aliases_.find(ascii_lower(address));
  if (it == aliases_.end()) return false;
  for (const auto& t : it->second.targets)
    if (t == u->name) return true;
  return false;
}

std::vector<std::string> UserDirectory::alias_targets(std::string_view address) const {
  const auto it = aliases_.find(ascii_lower(address));
  return it == aliases_.end() ? std::vector<std::string>{} : it->second.targets;
}

Status UserDirectory::add_user(std::string_view name, std::string_view hash, std::vector<std::string> addresses) {
  if (!valid_user_name(name)) return Error{concat({"invalid user name ", quoted(name), " (1..64 of a-z 0-9 . _ -)"})};
  if (!valid_user_hash(hash)) return Error{"the hash must be $y$... (yescrypt), $6$... (SHA-512) or ! (locked)"};
  if (users_.count(name) != 0) return Error{concat({"user ", name, " exists"})};
  if (auto e = check_addresses(addresses); !e.empty()) return Error{std::move(e)};
  User u{std::string(name), std::string(hash), std::move(addresses)};
  lines_.push_back({Line::Kind::user, u.name});
  std::string key = u.name;
  users_.emplace(std::move(key), std::move(u));
  return {};
}

Status UserDirectory::set_hash(std::string_view name, std::string_view hash) {
  const auto it = users_.find(name);
  if (it == users_.end()) return Error{concat({"no user ", name})};
  if (!valid_user_hash(hash)) return Error{"the hash must be $y$... (yescrypt), $6$... (SHA-512) or ! (locked)"};
  it->second.hash = std::string(hash);
  return {};
}

Status UserDirectory::remove_user(std::string_view name) {
  const auto it = users_.find(name);
  if (it == users_.end()) return Error{concat({"no user ", name})};
  std::erase_if(lines_, [&](const Line& l) { return l.kind == Line::Kind::user && l.text == name; });
  users_.erase(it);
  return {};
}

Result<std::string> hash_password(std::string_view password, std::string_view method) {
  const char* prefix = nullptr;
  if (method.empty() || method == "yescrypt") {
    prefix = "$y$";
  } else if (method == "sha512") {
    prefix = "$6$";
  } else {
    return Error{concat({"unknown hash method ", quoted(method), " (yescrypt or sha512)"})};
  }
  if (password.empty()) return Error{"empty password"};
  if (password.find('\0') != std::string_view::npos) return Error{"password contains a NUL"};
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn(prefix, 0, nullptr, 0, setting, sizeof setting) == nullptr || setting[0] == '*')
    return Error{concat({"crypt_gensalt: ", strerror(errno)})};
  std::string pw(password);
  std::string hash = run_crypt(pw, setting);
  explicit_bzero(pw.data(), pw.size());
  if (hash.empty() || hash.rfind(prefix, 0) != 0) return Error{"crypt failed"};
  return hash;
}

}  // namespace tern::policy
