// DNSBL lookups (mta/policy/dnsbl.h) and the resolver's plain A and TXT
// lookups against a real DNS server: dnsmasq on a free loopback port,
// serving reserved names (.test) only, driven on a real io_uring Loop (the
// harness in dnsmasq_process.h, shared with test_dns_resolver.cpp). A UDP
// socket that never answers stands for a blocklist whose servers are down.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "dns/resolver.h"
#include "mta/io/loop.h"
#include "mta/io/task.h"
#include "mta/policy/dnsbl.h"
#include "tests/integration/dnsmasq_process.h"

namespace tern::policy {
namespace {

using namespace tern::testing;  // dnsmasq_process.h

// 2001:db8::1 in nibble form, as a DNSBL name under bl.test.
constexpr const char* kV6Name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test";

dns::IpAddress ip(const char* text) {
  return dns::IpAddress::parse(text).value_or(dns::IpAddress{});
}

class DnsblLookupTest : public tern::testing::ResolverOnLoopTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kDnsmasq, X_OK), 0) << kDnsmasq << " is missing (Debian package dnsmasq-base)";
    black_hole_ = udp_socket_on_loopback();  // dnsmasq forwards slow.test here; nothing answers
    ASSERT_GE(black_hole_, 0);
    // dnsmasq splits a TXT record's text into character-strings at commas;
    // only its configuration-file reader honours quotes, so this one goes in a file.
    char conf_template[] = "/tmp/dnsbl-dnsmasq-XXXXXX";
    const int conf_fd = mkstemp(conf_template);
    ASSERT_GE(conf_fd, 0);
    conf_path_ = conf_template;
    const std::string conf = "txt-record=2.0.0.127.bl.test,\"spam source, see http://bl.test/\"\n";
    ASSERT_EQ(write(conf_fd, conf.data(), conf.size()), static_cast<ssize_t>(conf.size()));
    close(conf_fd);
    const uint16_t port = free_port();
    ASSERT_NE(port, 0);
    std::vector<std::string> records = {
        "--local=/test/",  // unknown .test names: NXDOMAIN, never forwarded
        // bl.test lists 127.0.0.2 (RFC 5782 §5's test entry) with a reason,
        // 127.0.0.3 without one, 127.0.0.4 with two TXT records, and 2001:db8::1.
        "--host-record=2.0.0.127.bl.test,127.0.0.2",
        "--conf-file=" + conf_path_,  // the TXT record with a comma (below)
        "--host-record=3.0.0.127.bl.test,127.0.0.10",
        "--host-record=4.0.0.127.bl.test,127.0.0.4",
        "--txt-record=4.0.0.127.bl.test,first reason",
        "--txt-record=4.0.0.127.bl.test,second reason",
        std::string("--host-record=") + kV6Name + ",127.0.0.2",
        std::string("--txt-record=") + kV6Name + ",v6 spammer",
        // other.test answers, but outside 127.0.0.0/8: no listing.
        "--host-record=2.0.0.127.other.test,192.0.2.99",
        "--txt-record=2.0.0.127.other.test,not a listing",
        // refused.test answers with Spamhaus' "query refused" code.
        "--host-record=2.0.0.127.refused.test,127.255.255.254",
        // A name with a TXT record and no A record (NODATA for A).
        "--txt-record=txtonly.bl.test,hello",
        "--server=/slow.test/127.0.0.1#" + std::to_string(bound_port(black_hole_)),
    };
    ASSERT_TRUE(dnsmasq_.start(port, records)) << "dnsmasq did not start";
    options_.servers = {dnsmasq_.server()};
    options_.timeout_ms = 300;
    options_.tries = 2;
  }
  void TearDown() override {
    if (black_hole_ >= 0) close(black_hole_);
    if (!conf_path_.empty()) unlink(conf_path_.c_str());
  }

  // One DNSBL check on the loop.
  std::optional<DnsblHit> check(const char* client, std::vector<std::string> zones) {
    std::optional<DnsblHit> got;
    const dns::IpAddress address = ip(client);
    run([&]() -> io::Task<void> { got = co_await check_dnsbl(resolver(), address, zones); });
    return got;
  }

  int black_hole_ = -1;
  std::string conf_path_;
  Dnsmasq dnsmasq_;
};

TEST_F(DnsblLookupTest, ListedAddressWithItsReason) {
  auto hit = check("127.0.0.2", {"bl.test"});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->zone, "bl.test");
  EXPECT_EQ(hit->reason, "spam source, see http://bl.test/");
}

TEST_F(DnsblLookupTest, ZoneWithTrailingDotAndUpperCase) {
  auto hit = check("127.0.0.2", {"BL.test."});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->zone, "BL.test");
  EXPECT_EQ(hit->reason, "spam source, see http://bl.test/");
}

TEST_F(DnsblLookupTest, ListedWithoutTxtGetsTheDefaultReason) {
  auto hit = check("127.0.0.3", {"bl.test"});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->reason, "listed in bl.test");
}

TEST_F(DnsblLookupTest, SeveralTxtRecordsAreJoined) {
  auto hit = check("127.0.0.4", {"bl.test"});
  ASSERT_TRUE(hit);
  // dnsmasq returns them in either order.
  EXPECT_TRUE(hit->reason == "first reason; second reason" || hit->reason == "second reason; first reason")
      << hit->reason;
}

TEST_F(DnsblLookupTest, Ipv6ClientIsLookedUpByNibbles) {
  auto hit = check("2001:db8::1", {"bl.test"});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->reason, "v6 spammer");
  EXPECT_FALSE(check("2001:db8::2", {"bl.test"}));
}

TEST_F(DnsblLookupTest, MappedIpv4ClientIsLookedUpAsIpv4) {
  const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2};
  std::optional<DnsblHit> got;
  const std::vector<std::string> zones = {"bl.test"};
  run([&]() -> io::Task<void> { got = co_await check_dnsbl(resolver(), dns::IpAddress::v6(mapped), zones); });
  ASSERT_TRUE(got);
  EXPECT_EQ(got->zone, "bl.test");
}

TEST_F(DnsblLookupTest, NxdomainIsNotListed) {
  EXPECT_FALSE(check("192.0.2.1", {"bl.test"}));
}

TEST_F(DnsblLookupTest, AnswerOutsideLoopbackIsNotAListing) {
  EXPECT_FALSE(check("127.0.0.2", {"other.test"}));
  EXPECT_FALSE(check("127.0.0.2", {"refused.test"}));
}

TEST_F(DnsblLookupTest, FirstListingZoneInOrderWins) {
  auto hit = check("127.0.0.2", {"clean.test", "other.test", "bl.test"});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->zone, "bl.test");
  EXPECT_FALSE(check("127.0.0.2", {"clean.test", "other.test", ""}));
  EXPECT_FALSE(check("127.0.0.2", {}));
}

TEST_F(DnsblLookupTest, UnansweredZoneFailsOpenWithinTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  auto hit = check("127.0.0.2", {"slow.test"});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(hit);
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST_F(DnsblLookupTest, ZonesAreAskedConcurrently) {
  // The slow zone costs one timeout (tries × timeout, c-ares doubling on
  // the second round: about 0.9 s), not one per zone; a listing in another
  // zone is still found.
  const auto start = std::chrono::steady_clock::now();
  auto hit = check("127.0.0.2", {"slow.test", "bl.test"});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->zone, "bl.test");
  std::optional<DnsblHit> none;
  const auto start2 = std::chrono::steady_clock::now();
  run([&]() -> io::Task<void> {
    const std::vector<std::string> zones = {"slow.test", "a.slow.test", "b.slow.test"};
    none = co_await check_dnsbl(resolver(), ip("192.0.2.9"), zones);
  });
  const auto three_slow = std::chrono::steady_clock::now() - start2;
  EXPECT_FALSE(none);
  EXPECT_LT(three_slow, elapsed + std::chrono::milliseconds(700)) << "the three slow zones were asked one by one";
}

TEST_F(DnsblLookupTest, AnswersComeFromTheCache) {
  std::optional<DnsblHit> before, after, miss_before, miss_after;
  std::optional<dns::AddrResult> nx_after;
  run([&]() -> io::Task<void> {
    const std::vector<std::string> zones = {"bl.test"};
    before = co_await check_dnsbl(resolver(), ip("127.0.0.2"), zones);
    miss_before = co_await check_dnsbl(resolver(), ip("192.0.2.1"), zones);
    dnsmasq_.stop();
    after = co_await check_dnsbl(resolver(), ip("127.0.0.2"), zones);
    nx_after = co_await resolver().lookup_a("1.2.0.192.bl.test");
  });
  ASSERT_TRUE(before && after);
  EXPECT_EQ(after->reason, "spam source, see http://bl.test/");  // the TXT record was cached too
  EXPECT_FALSE(miss_before);
  // The NXDOMAIN was cached: still NXDOMAIN, not a timeout.
  ASSERT_TRUE(nx_after && !nx_after->ok());
  EXPECT_EQ(nx_after->error().failure, dns::Failure::nxdomain) << nx_after->error().message;
}

TEST_F(DnsblLookupTest, PlainLookups) {
  auto table = dns::HostsTable::parse("192.0.2.200 2.0.0.127.bl.test hosted.test\n");
  ASSERT_TRUE(table.ok());
  options_.hosts = std::move(*table);
  std::optional<dns::AddrResult> a, hosted, nodata, literal;
  std::optional<dns::TextResult> txt, no_txt, nx_txt;
  std::optional<std::vector<dns::AddrResult>> many;
  run([&]() -> io::Task<void> {
    a = co_await resolver().lookup_a("2.0.0.127.BL.test.");
    hosted = co_await resolver().lookup_a("hosted.test");
    nodata = co_await resolver().lookup_a("txtonly.bl.test");
    literal = co_await resolver().lookup_a("[192.0.2.1]");
    txt = co_await resolver().lookup_txt("2.0.0.127.bl.test");
    no_txt = co_await resolver().lookup_txt("3.0.0.127.bl.test");
    nx_txt = co_await resolver().lookup_txt("nowhere.bl.test");
    std::vector<std::string> names = {"3.0.0.127.bl.test", "nowhere.test", "2.0.0.127.other.test"};
    many = co_await resolver().lookup_a_many(std::move(names));
  });
  // The host table is not consulted: DNS's answer.
  ASSERT_TRUE(a && a->ok()) << a->error().message;
  ASSERT_EQ((*a)->size(), 1u);
  EXPECT_EQ((*a)->front().to_string(), "127.0.0.2");
  ASSERT_TRUE(hosted && !hosted->ok());
  EXPECT_EQ(hosted->error().failure, dns::Failure::nxdomain);
  ASSERT_TRUE(literal && !literal->ok());  // no address literals either
  // The name exists without an A record (NODATA): no addresses, no error.
  ASSERT_TRUE(nodata && nodata->ok()) << nodata->error().message;
  EXPECT_TRUE((*nodata)->empty());
  ASSERT_TRUE(txt && txt->ok());
  EXPECT_EQ(**txt, std::vector<std::string>{"spam source, see http://bl.test/"});
  ASSERT_TRUE(no_txt && no_txt->ok()) << no_txt->error().message;
  EXPECT_TRUE((*no_txt)->empty());
  ASSERT_TRUE(nx_txt && !nx_txt->ok());
  EXPECT_EQ(nx_txt->error().failure, dns::Failure::nxdomain);
  ASSERT_TRUE(many && many->size() == 3u);
  ASSERT_TRUE((*many)[0].ok());
  EXPECT_EQ((*many)[0]->front().to_string(), "127.0.0.10");
  ASSERT_FALSE((*many)[1].ok());
  EXPECT_EQ((*many)[1].error().failure, dns::Failure::nxdomain);
  ASSERT_TRUE((*many)[2].ok());
  EXPECT_EQ((*many)[2]->front().to_string(), "192.0.2.99");
}

TEST_F(DnsblLookupTest, TimeoutIsTemporaryForPlainLookups) {
  std::optional<dns::AddrResult> a;
  std::optional<dns::TextResult> txt;
  run([&]() -> io::Task<void> {
    a = co_await resolver().lookup_a("x.slow.test");
    txt = co_await resolver().lookup_txt("x.slow.test");
  });
  ASSERT_TRUE(a && !a->ok());
  EXPECT_EQ(a->error().failure, dns::Failure::temporary);
  ASSERT_TRUE(txt && !txt->ok());
  EXPECT_EQ(txt->error().failure, dns::Failure::temporary);
}

}  // namespace
}  // namespace tern::policy
