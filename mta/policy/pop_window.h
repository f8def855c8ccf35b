// The POP-before-SMTP window (relay mode pop_before_smtp, and the override
// of connection restrictions): client IP -> until when it may relay. A
// successful POP login adds its client for relay.pop_window_minutes; an
// external POP server can feed it with `ternctl popauth add`.
//
// Kept in memory for the sessions (one lock, taken once per check) and in a
// small RocksDB of its own (synced writes), so the window survives a
// restart. Expired entries are ignored at once and purged on the next
// change, at open, and by purge().
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "queue/result.h"

namespace rocksdb {
class DB;
}

namespace tern::policy {

class PopWindow {
 public:
  struct Entry {
    std::string ip;
    int64_t until_us = 0;
  };
  static constexpr size_t kMaxEntries = 1'000'000;

  // Opens (creating) the store in `directory` and loads the entries that
  // have not expired at `now_us`.
  static Result<std::unique_ptr<PopWindow>> open(const std::string& directory, int64_t now_us);
  ~PopWindow();
  PopWindow(const PopWindow&) = delete;
  PopWindow& operator=(const PopWindow&) = delete;

  // Thread-safe. `ip` in any textual form; IPv4-mapped IPv6 counts as IPv4.
  // Blocking (a synced write): not for a loop thread.
  Status add(std::string_view ip, int64_t until_us, int64_t now_us);
  Status remove(std::string_view ip);
  Result<size_t> purge(int64_t now_us);
  // Thread-safe, no I/O.
  bool contains(std::string_view ip, int64_t now_us) const;
  std::vector<Entry> list(int64_t now_us) const;  // unexpired, by IP

  // "192.0.2.1", "2001:db8::1" (RFC 5952 form), "::ffff:192.0.2.1" -> "192.0.2.1".
  static std::optional<std::string> canonical_ip(std::string_view text);

 private:
  PopWindow() = default;
  // With write_mu_ held.
  Status purge_expired(int64_t now_us, size_t* removed);
  static constexpr int64_t kPurgeIntervalUs = 60'000'000;

  std::mutex write_mu_;        // one change at a time (map and store stay in step)
  int64_t last_purge_us_ = 0;  // under write_mu_
  mutable std::mutex mu_;      // the map; never held across a store write
  std::unordered_map<std::string, int64_t> entries_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace tern::policy
