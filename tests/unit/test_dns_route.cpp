#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "dns/route.h"

namespace tern::dns {
namespace {

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

RecordSet mx_answer(std::vector<MxRecord> records) {
  RecordSet s;
  s.kind = RecordSet::Kind::answer;
  s.mx = std::move(records);
  return s;
}

std::vector<std::string> exchange_names(const std::vector<MxRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.exchange);
  return out;
}

TEST(DnsRoute, OrdersByPreference) {
  std::mt19937 rng(1);
  MxPlan plan = plan_mx("d.test", mx_answer({{30, "c.test"}, {10, "a.test"}, {20, "b.test"}}), rng);
  ASSERT_EQ(plan.kind, MxPlan::Kind::use_mx);
  EXPECT_EQ(exchange_names(plan.exchanges), (std::vector<std::string>{"a.test", "b.test", "c.test"}));
}

TEST(DnsRoute, EqualPreferencesAreShuffled) {
  std::mt19937 rng(42);
  std::set<std::vector<std::string>> seen;
  for (int i = 0; i < 200; ++i) {
    std::vector<MxRecord> records = {{10, "a.test"}, {10, "b.test"}, {10, "c.test"}, {5, "first.test"}, {50, "last.test"}};
    order_mx(records, rng);
    auto names = exchange_names(records);
    EXPECT_EQ(names.front(), "first.test");
    EXPECT_EQ(names.back(), "last.test");
    seen.insert(names);
  }
  EXPECT_EQ(seen.size(), 6u);  // every order of the three equal hosts occurs
}

TEST(DnsRoute, NullMxFailsPermanentlyWith5_1_10) {
  std::mt19937 rng(1);
  MxPlan plan = plan_mx("null.test", mx_answer({{0, ""}}), rng);
  ASSERT_EQ(plan.kind, MxPlan::Kind::fail);
  EXPECT_EQ(plan.error.failure, Failure::null_mx);
  EXPECT_TRUE(plan.error.permanent());
  EXPECT_EQ(plan.error.enhanced_code(), "5.1.10");
}

TEST(DnsRoute, OnlyRootExchangesAreANullMxToo) {
  std::mt19937 rng(1);
  EXPECT_EQ(plan_mx("null.test", mx_answer({{0, ""}, {10, ""}}), rng).error.failure, Failure::null_mx);
}

TEST(DnsRoute, RootExchangeAmongOthersIsSkipped) {
  std::mt19937 rng(1);
  MxPlan plan = plan_mx("d.test", mx_answer({{0, ""}, {10, "mx.test"}}), rng);
  ASSERT_EQ(plan.kind, MxPlan::Kind::use_mx);
  EXPECT_EQ(exchange_names(plan.exchanges), std::vector<std::string>{"mx.test"});
}

TEST(DnsRoute, NoDataMeansImplicitMxAndNxdomainFails) {
  std::mt19937 rng(1);
  RecordSet nodata;
  nodata.kind = RecordSet::Kind::no_data;
  EXPECT_EQ(plan_mx("d.test", nodata, rng).kind, MxPlan::Kind::implicit_mx);
  RecordSet nx;
  nx.kind = RecordSet::Kind::nxdomain;
  MxPlan plan = plan_mx("gone.test", nx, rng);
  ASSERT_EQ(plan.kind, MxPlan::Kind::fail);
  EXPECT_EQ(plan.error.enhanced_code(), "5.1.2");
  EXPECT_TRUE(plan.error.permanent());
}

DnsResult<RecordSet> addr_set(RecordSet::Kind kind, std::vector<IpAddress> addrs = {}) {
  RecordSet s;
  s.kind = kind;
  s.addresses = std::move(addrs);
  return s;
}
const DnsResult<RecordSet> kTempFail = DnsError{Failure::temporary, "timeout"};

TEST(DnsRoute, MergeAddresses) {
  using K = RecordSet::Kind;
  auto both = merge_addresses("h.test", addr_set(K::answer, {ip("192.0.2.1")}), addr_set(K::answer, {ip("2001:db8::1")}));
  ASSERT_TRUE(both.ok());
  ASSERT_EQ(both->size(), 2u);
  EXPECT_EQ((*both)[0].to_string(), "192.0.2.1");
  // One family answering is enough, even when the other failed.
  EXPECT_TRUE(merge_addresses("h.test", kTempFail, addr_set(K::answer, {ip("2001:db8::1")})).ok());
  auto temp = merge_addresses("h.test", kTempFail, addr_set(K::no_data));
  ASSERT_FALSE(temp.ok());
  EXPECT_FALSE(temp.error().permanent());
  auto nx = merge_addresses("h.test", addr_set(K::nxdomain), addr_set(K::nxdomain));
  ASSERT_FALSE(nx.ok());
  EXPECT_EQ(nx.error().failure, Failure::nxdomain);
  auto none = merge_addresses("h.test", addr_set(K::no_data), addr_set(K::no_data));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().failure, Failure::no_address);
  EXPECT_EQ(none.error().enhanced_code(), "5.1.2");
}

TEST(DnsRoute, AssembleSkipsHostsWithoutAddresses) {
  std::vector<MxRecord> exchanges = {{10, "a.test"}, {20, "b.test"}};
  std::vector<DnsResult<std::vector<IpAddress>>> addrs = {DnsError{Failure::nxdomain, "a.test: gone"},
                                                          std::vector<IpAddress>{ip("192.0.2.2")}};
  auto route = assemble_route("d.test", exchanges, addrs);
  ASSERT_TRUE(route.ok());
  ASSERT_EQ(route->hosts.size(), 1u);
  EXPECT_EQ(route->hosts[0].name, "b.test");
  EXPECT_EQ(route->hosts[0].preference, 20);
}

TEST(DnsRoute, AssembleFailsTemporarilyIfAnyHostMightStillResolve) {
  std::vector<MxRecord> exchanges = {{10, "a.test"}, {20, "b.test"}};
  std::vector<DnsResult<std::vector<IpAddress>>> addrs = {DnsError{Failure::nxdomain, "a.test: gone"},
                                                          DnsError{Failure::temporary, "b.test: timeout"}};
  auto route = assemble_route("d.test", exchanges, addrs);
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.error().enhanced_code(), "4.4.3");
  addrs[1] = DnsError{Failure::no_address, "b.test: no A or AAAA"};
  route = assemble_route("d.test", exchanges, addrs);
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.error().failure, Failure::unroutable);
  EXPECT_EQ(route.error().enhanced_code(), "5.4.4");
}

MxRoute route_of(std::vector<MxHost> hosts) {
  MxRoute r;
  r.domain = "d.test";
  r.hosts = std::move(hosts);
  return r;
}

TEST(DnsRoute, IsUs) {
  const std::vector<IpAddress> ours = {ip("192.0.2.25"), ip("2001:db8::25")};
  EXPECT_TRUE(is_us(ip("192.0.2.25"), ours));
  EXPECT_TRUE(is_us(ip("::ffff:192.0.2.25"), ours));
  EXPECT_TRUE(is_us(ip("2001:db8::25"), ours));
  EXPECT_TRUE(is_us(ip("0.0.0.0"), ours));
  EXPECT_FALSE(is_us(ip("192.0.2.26"), ours));
}

TEST(DnsRoute, DropOurselvesKeepsOnlyMorePreferredHosts) {
  const std::vector<IpAddress> ours = {ip("192.0.2.25")};
  auto route = drop_ourselves(route_of({{10, "primary.test", {ip("192.0.2.1")}},
                                        {20, "us.test", {ip("192.0.2.25")}},
                                        {20, "peer.test", {ip("192.0.2.3")}},
                                        {30, "backup.test", {ip("192.0.2.4")}}}),
                              ours);
  ASSERT_TRUE(route.ok());
  ASSERT_EQ(route->hosts.size(), 1u);
  EXPECT_EQ(route->hosts[0].name, "primary.test");

  auto untouched = drop_ourselves(route_of({{10, "a.test", {ip("192.0.2.1")}}}), ours);
  ASSERT_TRUE(untouched.ok());
  EXPECT_EQ(untouched->hosts.size(), 1u);
}

TEST(DnsRoute, BestMxBeingUsIsAMailLoop) {
  const std::vector<IpAddress> ours = {ip("192.0.2.25")};
  auto route = drop_ourselves(route_of({{10, "us.test", {ip("192.0.2.99"), ip("192.0.2.25")}},
                                        {20, "backup.test", {ip("192.0.2.4")}}}),
                              ours);
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.error().failure, Failure::mail_loop);
  EXPECT_EQ(route.error().enhanced_code(), "5.4.6");
  EXPECT_TRUE(route.error().permanent());
}

}  // namespace
}  // namespace tern::dns
