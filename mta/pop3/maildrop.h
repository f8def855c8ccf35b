// A POP3 maildrop: one user's Maildir as numbered messages.
//
// The Maildir is <root>/<user>/{new,cur}; the local delivery agent writes its
// files with LF line ends. Opening moves new/ messages into cur/ (with the
// ":2," info suffix, keeping the unique part) and numbers everything from 1,
// oldest first (by unique name, digit runs compared as numbers). A message
// delivered after open() is not seen until the next open (RFC 1939 §8: the
// maildrop as it was at login).
//
// All sizes are in CRLF octets, as POP3 sends the message (the file's octets
// plus one for each LF that is not already preceded by CR, plus a CRLF when
// the last line has no line end); byte-stuffing is not counted.
//
// Blocking file I/O: the session runs every call that touches files
// (open, retrieve, commit) on an offload thread. Not thread-safe; the
// session never uses one maildrop from two threads at a time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/result.h"

namespace tern::pop3 {

class Maildrop {
 public:
  // A missing Maildir (or missing new/ or cur/) is an empty maildrop. The
  // user name must be a plain file name (no '/', not "." or "..").
  static Result<Maildrop> open(const std::string& root, const std::string& user);

  // The highest message number (deleted messages keep their numbers).
  size_t size() const { return messages_.size(); }
  // Messages not marked deleted, and their octets.
  size_t count() const;
  uint64_t total_octets() const;
  // Messages marked deleted in this session.
  size_t deleted_count() const;

  // For message n (1-based); nullopt when there is no such message or it is
  // marked deleted.
  bool exists(size_t n) const;
  std::optional<uint64_t> octets(size_t n) const;
  // The unique-id listing (RFC 1939 §7): 1..70 octets of 0x21..0x7E, the
  // same in every session for the same file. The Maildir unique name without
  // its ":2,..." info; a name that is too long or has other octets becomes a
  // readable prefix plus a hash of the whole name.
  std::optional<std::string> uid(size_t n) const;

  // The message as POP3 sends it after "+OK": CRLF line ends, byte-stuffed
  // (RFC 1939 §3), ending with ".\r\n". With top_lines (TOP): the header, the
  // blank line and that many lines of the body.
  Result<std::string> retrieve(size_t n, std::optional<size_t> top_lines) const;

  // False when there is no such message or it is deleted already.
  bool mark_deleted(size_t n);
  // Unmarks every deleted message (RSET).
  void reset();
  // The UPDATE state: removes the files of the messages marked deleted; how
  // many were removed (one already gone counts as removed). An error when
  // some could not be removed (the others are removed nonetheless).
  Result<size_t> commit();

  // Exposed for tests: the uid of a Maildir file name.
  static std::string uid_for_name(std::string_view file_name);

 private:
  struct Message {
    std::string path;  // the file, in cur/ (or in new/ when it could not be moved)
    std::string uid;
    std::string name;  // the unique part, for ordering
    std::string key;   // its natural-order key
    uint64_t octets = 0;
    bool deleted = false;
  };
  const Message* get(size_t n) const;

  std::vector<Message> messages_;
};

}  // namespace tern::pop3
