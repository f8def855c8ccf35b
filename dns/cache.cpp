#include "dns/cache.h"

namespace tern::dns {

std::string Cache::key(std::string_view name, RecordType type) {
  std::string k(name);
  k += '/';
  k += std::to_string(static_cast<uint16_t>(type));
  return k;
}

void Cache::erase(std::unordered_map<std::string, Entry>::iterator it) {
  oldest_first_.erase(it->second.age);
  entries_.erase(it);
}

const RecordSet* Cache::find(std::string_view name, RecordType type, int64_t now_ms) {
  auto it = entries_.find(key(name, type));
  if (it == entries_.end()) return nullptr;
  if (now_ms >= it->second.expires_ms) {
    erase(it);
    return nullptr;
  }
  return &it->second.set;
}

void Cache::store(std::string_view name, RecordType type, RecordSet set, uint32_t ttl_s, int64_t now_ms) {
  if (ttl_s == 0 || max_entries_ == 0) return;
  std::string k = key(name, type);
  if (auto it = entries_.find(k); it != entries_.end()) erase(it);
  while (entries_.size() >= max_entries_) erase(entries_.find(oldest_first_.front()));
  oldest_first_.push_back(k);
  const int64_t expires = now_ms + int64_t{ttl_s} * 1000;
  entries_.emplace(std::move(k), Entry{std::move(set), expires, std::prev(oldest_first_.end())});
}

}  // namespace tern::dns
