#include "mta/policy/pop_window.h"

#include <arpa/inet.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>

#include "mta/log.h"
#include "queue/rocksdb_log.h"

namespace tern::policy {

namespace {

// Values: the expiry as 8 big-endian bytes.
std::string encode_until(int64_t until_us) {
  std::string out(8, '\0');
  const auto v = static_cast<uint64_t>(until_us);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (56 - 8 * i));
  return out;
}

std::optional<int64_t> decode_until(std::string_view in) {
  if (in.size() != 8) return std::nullopt;
  uint64_t v = 0;
  for (char c : in) v = (v << 8) | static_cast<unsigned char>(c);
  return static_cast<int64_t>(v);
}

}  // namespace

std::optional<std::string> PopWindow::canonical_ip(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string z(text);
  unsigned char bytes[16];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, z.c_str(), bytes) == 1) {
    inet_ntop(AF_INET, bytes, out, sizeof out);
    return std::string(out);
  }
  if (inet_pton(AF_INET6, z.c_str(), bytes) != 1) return std::nullopt;
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, kMapped, sizeof kMapped) == 0) {
    inet_ntop(AF_INET, bytes + 12, out, sizeof out);
    return std::string(out);
  }
  inet_ntop(AF_INET6, bytes, out, sizeof out);
  return std::string(out);
}

Result<std::unique_ptr<PopWindow>> PopWindow::open(const std::string& directory, int64_t now_us) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_open_files = 16;
  options.info_log = queue::log_to([](const std::string& line) { log::event("popauth_rocksdb", {{"message", line}}); });
  rocksdb::DB* raw = nullptr;
  rocksdb::Status st = rocksdb::DB::Open(options, directory, &raw);
  if (!st.ok()) return Error{"pop window store " + directory + ": " + st.ToString()};
  std::unique_ptr<PopWindow> window(new PopWindow());
  window->db_.reset(raw);
  std::unique_ptr<rocksdb::Iterator> it(window->db_->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const auto until = decode_until(it->value().ToStringView());
    if (until) window->entries_[it->key().ToString()] = *until;
  }
  if (!it->status().ok()) return Error{"pop window store: " + it->status().ToString()};
  std::lock_guard writer(window->write_mu_);
  size_t removed = 0;
  Status purged = window->purge_expired(now_us, &removed);
  if (!purged) return Error{purged.error()};
  return window;
}

PopWindow::~PopWindow() = default;

// Writers take write_mu_ for the whole change and mu_ only to read or
// update the map: sessions checking contains() never wait for an fsync.
Status PopWindow::purge_expired(int64_t now_us, size_t* removed) {
  std::vector<std::string> expired;
  {
    std::lock_guard lock(mu_);
    for (const auto& [ip, until] : entries_)
      if (until <= now_us) expired.push_back(ip);
  }
  last_purge_us_ = now_us;
  if (expired.empty()) return {};
  rocksdb::WriteBatch batch;
  for (const auto& ip : expired) batch.Delete(ip);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  rocksdb::Status st = db_->Write(sync, &batch);
  if (!st.ok()) return Error{"pop window store: " + st.ToString()};
  std::lock_guard lock(mu_);
  for (const auto& ip : expired) entries_.erase(ip);
  *removed = expired.size();
  return {};
}

Status PopWindow::add(std::string_view ip, int64_t until_us, int64_t now_us) {
  const auto key = canonical_ip(ip);
  if (!key) return Error{"not an IP address: " + std::string(ip)};
  std::lock_guard writer(write_mu_);
  // Expired entries go at most once a minute (each purge reads the whole map).
  size_t removed = 0;
  if (now_us - last_purge_us_ >= kPurgeIntervalUs) {
    if (Status purged = purge_expired(now_us, &removed); !purged) return purged;
  }
  {
    std::lock_guard lock(mu_);
    if (entries_.size() >= kMaxEntries && !entries_.contains(*key)) return Error{"the POP window store is full"};
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  rocksdb::Status st = db_->Put(sync, *key, encode_until(until_us));
  if (!st.ok()) return Error{"pop window store: " + st.ToString()};
  std::lock_guard lock(mu_);
  entries_[*key] = until_us;
  return {};
}

Status PopWindow::remove(std::string_view ip) {
  const auto key = canonical_ip(ip);
  if (!key) return Error{"not an IP address: " + std::string(ip)};
  std::lock_guard writer(write_mu_);
  {
    std::lock_guard lock(mu_);
    if (!entries_.contains(*key)) return Error{*key + " is not in the POP window"};
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  rocksdb::Status st = db_->Delete(sync, *key);
  if (!st.ok()) return Error{"pop window store: " + st.ToString()};
  std::lock_guard lock(mu_);
  entries_.erase(*key);
  return {};
}

Result<size_t> PopWindow::purge(int64_t now_us) {
  std::lock_guard writer(write_mu_);
  size_t removed = 0;
  if (Status st = purge_expired(now_us, &removed); !st) return Error{st.error()};
  return removed;
}

bool PopWindow::contains(std::string_view ip, int64_t now_us) const {
  const auto key = canonical_ip(ip);
  if (!key) return false;
  std::lock_guard lock(mu_);
  auto it = entries_.find(*key);
  return it != entries_.end() && it->second > now_us;
}

std::vector<PopWindow::Entry> PopWindow::list(int64_t now_us) const {
  std::vector<Entry> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [ip, until] : entries_)
      if (until > now_us) out.push_back({ip, until});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.ip < b.ip; });
  return out;
}

}  // namespace tern::policy
