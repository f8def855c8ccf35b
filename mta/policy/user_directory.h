// The user directory: users with crypt(3) password hashes and the
// addresses each owns, and aliases. One text file; see docs/configuration.md.
//
// File format (UTF-8 text, one entry per line; fields separated by spaces or
// tabs; '#' starts a comment line; blank lines are ignored):
//
//   # comment
//   user NAME HASH [ADDRESS...]
//   alias ADDRESS TARGET...
//
//   NAME     [a-z0-9._-]+, lower case, 1..64 characters.
//   HASH     a crypt(3) hash: "$y$..." (yescrypt) or "$6$..." (SHA-512
//            crypt), or "!" for a locked user (can never log in).
//   ADDRESS  a mailbox local@domain (RFC 5321, UTF-8 allowed) the user may
//            send as; compared case-insensitively (ASCII).
//   TARGET   a user NAME, or an address (contains '@'), that mail to the
//            alias ADDRESS goes to. Names need not exist (yet).
//
// Errors name the line ("line 3: unknown user hash scheme"); a user or alias
// defined twice is an error. Comments and blank lines survive a
// parse → modify → serialize cycle (ternctl edits keep them).
//
// Thread safety: a UserDirectory is a value. Once loaded it is not changed;
// session threads share it as std::shared_ptr<const UserDirectory> and call
// only const members, which touch no shared mutable state. A reload (SIGHUP)
// builds a new directory and swaps the pointer. The mutators are for
// ternctl, which edits its own copy and writes the file.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "queue/result.h"

namespace tern::policy {

struct User {
  std::string name;
  std::string hash;                    // "!" = locked
  std::vector<std::string> addresses;  // as written
  bool locked() const { return hash == "!"; }
};

struct Alias {
  std::string address;               // as written
  std::vector<std::string> targets;  // user names or addresses
};

class UserDirectory {
 public:
  // The text of a users file. Errors: "line N: ...".
  static Result<UserDirectory> parse(std::string_view text);
  // A missing file is an empty directory. Errors: "PATH: line N: ..." or
  // "PATH: <strerror>".
  static Result<UserDirectory> load(const std::string& path);
  // The file text: parse(serialize()) gives the same directory.
  std::string serialize() const;

  const User* find(std::string_view name) const;
  // All users, ordered by name.
  std::vector<const User*> users() const;
  const std::map<std::string, Alias, std::less<>>& aliases() const { return aliases_; }
  bool empty() const { return users_.empty() && aliases_.empty(); }

  // The password against the user's hash, compared in constant time. An
  // unknown or locked user costs one hash computation too (against a fixed
  // dummy yescrypt hash) and fails. CPU-bound (tens of ms for yescrypt):
  // keep it off an event loop.
  bool verify(std::string_view name, std::string_view password) const;
  // `address` is one of the user's addresses, or an alias whose targets
  // include the user's name.
  bool owns(std::string_view user, std::string_view address) const;
  // The targets of the alias `address` (case-insensitive), or none.
  std::vector<std::string> alias_targets(std::string_view address) const;

  // For ternctl. Names, hashes and addresses are checked as in the file.
  Status add_user(std::string_view name, std::string_view hash, std::vector<std::string> addresses);
  Status set_hash(std::string_view name, std::string_view hash);
  Status remove_user(std::string_view name);

 private:
  // One line of the file, in order: a comment or blank line kept verbatim,
  // or the place of a user or alias entry.
  struct Line {
    enum class Kind { verbatim, user, alias } kind;
    std::string text;  // verbatim: the line; user: the name; alias: the lower-cased address
  };

  std::map<std::string, User, std::less<>> users_;     // by name
  std::map<std::string, Alias, std::less<>> aliases_;  // by lower-cased address
  std::vector<Line> lines_;
};

// Syntax checks shared with ternctl.
bool valid_user_name(std::string_view name);
bool valid_user_hash(std::string_view hash);  // "$y$...", "$6$..." or "!"
bool valid_user_address(std::string_view address);

// A new crypt(3) hash of `password` with a fresh salt from the OS's
// randomness. method: "yescrypt" ("$y$", also for "") or "sha512" ("$6$").
Result<std::string> hash_password(std::string_view password, std::string_view method = "yescrypt");

}  // namespace tern::policy
