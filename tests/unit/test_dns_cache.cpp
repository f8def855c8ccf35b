#include <gtest/gtest.h>

#include "dns/cache.h"

namespace tern::dns {
namespace {

RecordSet addresses(const char* ip) {
  RecordSet s;
  s.addresses = {*IpAddress::parse(ip)};
  return s;
}

TEST(DnsCache, HitUntilTheTtlExpires) {
  Cache cache(10);
  cache.store("host.test", RecordType::a, addresses("192.0.2.1"), 60, 1'000);
  const RecordSet* hit = cache.find("host.test", RecordType::a, 60'999);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->addresses[0].to_string(), "192.0.2.1");
  EXPECT_EQ(cache.find("host.test", RecordType::a, 61'000), nullptr);
  EXPECT_EQ(cache.size(), 0u);  // the expired entry went away
}

TEST(DnsCache, TypesAreSeparateRecordSets) {
  Cache cache(10);
  cache.store("host.test", RecordType::a, addresses("192.0.2.1"), 60, 0);
  EXPECT_EQ(cache.find("host.test", RecordType::aaaa, 0), nullptr);
  EXPECT_EQ(cache.find("host.test", RecordType::mx, 0), nullptr);
  EXPECT_NE(cache.find("host.test", RecordType::a, 0), nullptr);
}

TEST(DnsCache, NegativeAnswersAreCachedToo) {
  Cache cache(10);
  RecordSet nx;
  nx.kind = RecordSet::Kind::nxdomain;
  cache.store("gone.test", RecordType::mx, nx, 30, 0);
  const RecordSet* hit = cache.find("gone.test", RecordType::mx, 29'000);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->kind, RecordSet::Kind::nxdomain);
}

TEST(DnsCache, ZeroTtlOrZeroCapacityStoresNothing) {
  Cache cache(10);
  cache.store("host.test", RecordType::a, addresses("192.0.2.1"), 0, 0);
  EXPECT_EQ(cache.size(), 0u);
  Cache disabled(0);
  disabled.store("host.test", RecordType::a, addresses("192.0.2.1"), 60, 0);
  EXPECT_EQ(disabled.find("host.test", RecordType::a, 0), nullptr);
}

TEST(DnsCache, FullCacheEvictsTheOldestEntry) {
  Cache cache(2);
  cache.store("one.test", RecordType::a, addresses("192.0.2.1"), 600, 0);
  cache.store("two.test", RecordType::a, addresses("192.0.2.2"), 600, 1);
  cache.store("one.test", RecordType::a, addresses("192.0.2.11"), 600, 2);  // refreshed: now the newest
  cache.store("three.test", RecordType::a, addresses("192.0.2.3"), 600, 3);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.find("two.test", RecordType::a, 4), nullptr);
  ASSERT_NE(cache.find("one.test", RecordType::a, 4), nullptr);
  EXPECT_EQ(cache.find("one.test", RecordType::a, 4)->addresses[0].to_string(), "192.0.2.11");
  EXPECT_NE(cache.find("three.test", RecordType::a, 4), nullptr);
}

}  // namespace
}  // namespace tern::dns
