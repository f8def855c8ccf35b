// The resolver's cache: one per Resolver, hence per loop (shard-nothing, no
// locks). Keyed by (name, type); each record set expires on its own TTL,
// negative answers included. Bounded: storing into a full cache evicts the
// entry stored longest ago. Time is passed in, so it is pure and testable.
#pragma once
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "dns/record_set.h"

namespace tern::dns {

class Cache {
 public:
  explicit Cache(size_t max_entries) : max_entries_(max_entries) {}

  // The set stored for (name, type) if it has not expired at now_ms (an
  // expired one is dropped). `name` must be normalized (normalize_name).
  const RecordSet* find(std::string_view name, RecordType type, int64_t now_ms);
  // Stores or replaces; a TTL of 0 or a cache of 0 entries stores nothing.
  void store(std::string_view name, RecordType type, RecordSet set, uint32_t ttl_s, int64_t now_ms);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    RecordSet set;
    int64_t expires_ms;
    std::list<std::string>::iterator age;  // position in oldest_first_
  };
  static std::string key(std::string_view name, RecordType type);
  void erase(std::unordered_map<std::string, Entry>::iterator it);

  size_t max_entries_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> oldest_first_;  // keys in the order they were stored
};

}  // namespace tern::dns
