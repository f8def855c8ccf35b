// The resolver against a real DNS server: dnsmasq on a free loopback port,
// serving reserved names (.test) only, driven on a real io_uring Loop. A
// SERVFAIL responder and a silent "black hole" socket cover the failures a
// local dnsmasq cannot produce on demand.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "dns/resolver.h"
#include "mta/io/loop.h"
#include "mta/io/task.h"
#include "tests/integration/dnsmasq_process.h"

namespace tern::dns {
namespace {

using namespace tern::testing;  // dnsmasq_process.h

constexpr int kBigMxCount = 20;

// Answers every query with SERVFAIL, from its own thread.
class ServfailServer {
 public:
  ServfailServer() {
    fd_ = udp_socket_on_loopback();
    timeval tv{0, 50'000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    thread_ = std::thread([this] {
      unsigned char buf[1500];
      while (!stopping_) {
        sockaddr_in from{};
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n < 12) continue;
        ++queries_;
        buf[2] |= 0x80;                                        // QR: a response
        buf[3] = static_cast<unsigned char>(0x80 | 2);          // RA, RCODE = SERVFAIL
        sendto(fd_, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    });
  }
  ~ServfailServer() {
    stopping_ = true;
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return bound_port(fd_); }
  int queries() const { return queries_; }

 private:
  int fd_ = -1;
  std::atomic<int> queries_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

class DnsResolverTest : public tern::testing::ResolverOnLoopTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kDnsmasq, X_OK), 0) << kDnsmasq << " is missing (Debian package dnsmasq-base)";
    const uint16_t port = free_port();
    ASSERT_NE(port, 0);
    const std::string servfail = "127.0.0.1#" + std::to_string(servfail_.port());
    std::vector<std::string> records = {
        "--local=/test/",  // unknown .test names: NXDOMAIN, never forwarded
        "--mx-host=mx.test,b.mx.test,20", "--mx-host=mx.test,a.mx.test,10", "--mx-host=mx.test,c.mx.test,30",
        "--host-record=a.mx.test,192.0.2.1", "--host-record=b.mx.test,192.0.2.2",
        "--host-record=c.mx.test,192.0.2.3,2001:db8::3",
        "--mx-host=equal.test,e1.test,10", "--mx-host=equal.test,e2.test,10", "--mx-host=equal.test,e3.test,10",
        "--host-record=e1.test,192.0.2.11", "--host-record=e2.test,192.0.2.12", "--host-record=e3.test,192.0.2.13",
        "--mx-host=dangling.test,nowhere.test,10",
        "--host-record=implicit.test,192.0.2.50,2001:db8::50",
        "--mx-host=null.test,.,0",
        "--host-record=v6only.test,2001:db8::6",
        "--server=/servfail.test/" + servfail,
    };
    // An MX set too large for a 512-octet UDP answer: c-ares retries over TCP.
    for (int i = 1; i <= kBigMxCount; ++i) {
      const std::string host = "a-rather-long-exchange-name-" + std::to_string(i) + ".big.test";
      records.push_back("--mx-host=big.test," + host + "," + std::to_string(i));
      records.push_back("--host-record=" + host + ",192.0.2." + std::to_string(100 + i));
    }
    ASSERT_TRUE(dnsmasq_.start(port, records)) << "dnsmasq did not start";
    options_.servers = {dnsmasq_.server()};
    options_.timeout_ms = 500;
    options_.tries = 2;
  }

  // A single MX resolution on the loop.
  MxResult mx(const std::string& domain) {
    std::optional<MxResult> got;
    run([&]() -> io::Task<void> { got = co_await resolver().resolve_mx(domain); });
    return got ? std::move(*got) : MxResult(DnsError{Failure::temporary, "never completed"});
  }
  AddrResult addresses(const std::string& host) {
    std::optional<AddrResult> got;
    run([&]() -> io::Task<void> { got = co_await resolver().resolve_addresses(host); });
    return got ? std::move(*got) : AddrResult(DnsError{Failure::temporary, "never completed"});
  }

  ServfailServer servfail_;
  Dnsmasq dnsmasq_;
};

std::vector<std::string> texts(const std::vector<IpAddress>& addrs) {
  std::vector<std::string> out;
  for (const auto& a : addrs) out.push_back(a.to_string());
  return out;
}

TEST_F(DnsResolverTest, MxHostsInPreferenceOrderWithTheirAddresses) {
  MxResult route = mx("MX.test.");
  ASSERT_TRUE(route.ok()) << route.error().message;
  EXPECT_EQ(route->source, MxRoute::Source::mx);
  EXPECT_EQ(route->domain, "mx.test");
  ASSERT_EQ(route->hosts.size(), 3u);
  EXPECT_EQ(route->hosts[0].name, "a.mx.test");
  EXPECT_EQ(route->hosts[0].preference, 10);
  EXPECT_EQ(texts(route->hosts[0].addresses), std::vector<std::string>{"192.0.2.1"});
  EXPECT_EQ(route->hosts[1].name, "b.mx.test");
  EXPECT_EQ(route->hosts[2].name, "c.mx.test");
  EXPECT_EQ(texts(route->hosts[2].addresses), (std::vector<std::string>{"192.0.2.3", "2001:db8::3"}));
}

TEST_F(DnsResolverTest, EqualPreferencesComeInVaryingOrder) {
  std::set<std::string> first_hosts;
  size_t complete_routes = 0;
  run([&]() -> io::Task<void> {
    for (int i = 0; i < 40; ++i) {
      MxResult route = co_await resolver().resolve_mx("equal.test");
      if (route.ok() && route->hosts.size() == 3) {
        ++complete_routes;
        first_hosts.insert(route->hosts[0].name);
      }
    }
  });
  EXPECT_EQ(complete_routes, 40u);
  EXPECT_GE(first_hosts.size(), 2u);  // 40 identical draws of 3: odds 3^-39
}

TEST_F(DnsResolverTest, NoMxMeansTheDomainsOwnAddresses) {
  MxResult route = mx("implicit.test");
  ASSERT_TRUE(route.ok()) << route.error().message;
  EXPECT_EQ(route->source, MxRoute::Source::implicit_mx);
  ASSERT_EQ(route->hosts.size(), 1u);
  EXPECT_EQ(route->hosts[0].name, "implicit.test");
  EXPECT_EQ(texts(route->hosts[0].addresses), (std::vector<std::string>{"192.0.2.50", "2001:db8::50"}));
}

TEST_F(DnsResolverTest, NullMxIsAPermanentFailure) {
  MxResult route = mx("null.test");
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.error().failure, Failure::null_mx);
  EXPECT_TRUE(route.error().permanent());
  EXPECT_EQ(route.error().enhanced_code(), "5.1.10");
}

TEST_F(DnsResolverTest, NxdomainIsAPermanentFailure) {
  MxResult route = mx("no-such-domain.test");
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.error().failure, Failure::nxdomain);
  EXPECT_EQ(route.error().enhanced_code(), "5.1.2");
}

TEST_F(DnsResolverTest, MxHostWithoutAddressIsUnroutable) {
  MxResult route = mx("dangling.test");
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.error().failure, Failure::unroutable);
  EXPECT_EQ(route.error().enhanced_code(), "5.4.4");
}

TEST_F(DnsResolverTest, ServfailIsTemporary) {
  MxResult route = mx("host.servfail.test");
  ASSERT_FALSE(route.ok());
  EXPECT_GT(servfail_.queries(), 0) << "dnsmasq did not forward to the SERVFAIL responder";
  EXPECT_FALSE(route.error().permanent());
  EXPECT_EQ(route.error().enhanced_code(), "4.4.3");
}

TEST_F(DnsResolverTest, TimeoutIsTemporaryAndBounded) {
  const int black_hole = udp_socket_on_loopback();  // never answers
  options_.servers = {"127.0.0.1:" + std::to_string(bound_port(black_hole))};
  options_.timeout_ms = 200;
  options_.tries = 2;
  const auto start = std::chrono::steady_clock::now();
  MxResult route = mx("slow.example");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  close(black_hole);
  ASSERT_FALSE(route.ok());
  EXPECT_EQ(route.error().failure, Failure::temporary);
  EXPECT_EQ(route.error().enhanced_code(), "4.4.3");
  EXPECT_GE(elapsed, std::chrono::milliseconds(350));  // two tries really waited
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST_F(DnsResolverTest, TruncatedAnswerIsRetriedOverTcp) {
  MxResult route = mx("big.test");
  ASSERT_TRUE(route.ok()) << route.error().message;
  ASSERT_EQ(route->hosts.size(), static_cast<size_t>(kBigMxCount));
  for (int i = 0; i < kBigMxCount; ++i) {
    EXPECT_EQ(route->hosts[static_cast<size_t>(i)].preference, i + 1);
    EXPECT_EQ(texts(route->hosts[static_cast<size_t>(i)].addresses),
              std::vector<std::string>{"192.0.2." + std::to_string(101 + i)});
  }
}

TEST_F(DnsResolverTest, AaaaOnlyHost) {
  AddrResult addrs = addresses("v6only.test");
  ASSERT_TRUE(addrs.ok()) << addrs.error().message;
  EXPECT_EQ(texts(*addrs), std::vector<std::string>{"2001:db8::6"});
}

TEST_F(DnsResolverTest, AddressLiteralsNeedNoDns) {
  dnsmasq_.stop();  // any DNS query would now time out
  std::optional<MxResult> v4, v6, bad;
  run([&]() -> io::Task<void> {
    v4 = co_await resolver().resolve_mx("[192.0.2.9]");
    v6 = co_await resolver().resolve_mx("[IPv6:2001:db8::9]");
    bad = co_await resolver().resolve_mx("[not.an.address]");
  });
  ASSERT_TRUE(v4 && v4->ok());
  EXPECT_EQ((*v4)->source, MxRoute::Source::literal);
  EXPECT_EQ(texts((*v4)->hosts.at(0).addresses), std::vector<std::string>{"192.0.2.9"});
  ASSERT_TRUE(v6 && v6->ok());
  EXPECT_EQ(texts((*v6)->hosts.at(0).addresses), std::vector<std::string>{"2001:db8::9"});
  ASSERT_TRUE(bad && !bad->ok());
  EXPECT_EQ(bad->error().failure, Failure::bad_literal);
}

TEST_F(DnsResolverTest, HostsTableOverridesDns) {
  auto table = HostsTable::parse("192.0.2.77 mx.test\n192.0.2.78 a.mx.test\n");
  ASSERT_TRUE(table.ok());
  options_.hosts = std::move(*table);
  std::optional<MxResult> route;
  std::optional<AddrResult> host;
  run([&]() -> io::Task<void> {
    route = co_await resolver().resolve_mx("mx.test");
    host = co_await resolver().resolve_addresses("A.MX.TEST");
  });
  ASSERT_TRUE(route && route->ok());
  EXPECT_EQ((*route)->source, MxRoute::Source::hosts_table);
  EXPECT_EQ(texts((*route)->hosts.at(0).addresses), std::vector<std::string>{"192.0.2.77"});
  ASSERT_TRUE(host && host->ok());
  EXPECT_EQ(texts(**host), std::vector<std::string>{"192.0.2.78"});
}

TEST_F(DnsResolverTest, CachedAnswerSurvivesTheServerGoingAway) {
  std::optional<MxResult> before, after;
  std::optional<AddrResult> never_asked;
  run([&]() -> io::Task<void> {
    before = co_await resolver().resolve_mx("mx.test");
    dnsmasq_.stop();
    after = co_await resolver().resolve_mx("mx.test");
    never_asked = co_await resolver().resolve_addresses("b.test");
  });
  ASSERT_TRUE(before && before->ok());
  ASSERT_TRUE(after && after->ok()) << after->error().message;
  ASSERT_EQ((*after)->hosts.size(), 3u);
  EXPECT_EQ((*after)->hosts[0].name, "a.mx.test");
  EXPECT_EQ(texts((*after)->hosts[2].addresses), (std::vector<std::string>{"192.0.2.3", "2001:db8::3"}));
  // The server really is gone: what was not cached fails, temporarily.
  ASSERT_TRUE(never_asked && !never_asked->ok());
  EXPECT_FALSE(never_asked->error().permanent());
}

TEST_F(DnsResolverTest, NegativeAnswersAreCached) {
  std::optional<MxResult> before, after;
  run([&]() -> io::Task<void> {
    before = co_await resolver().resolve_mx("no-such-domain.test");
    dnsmasq_.stop();
    after = co_await resolver().resolve_mx("no-such-domain.test");
  });
  ASSERT_TRUE(before && !before->ok());
  EXPECT_EQ(before->error().failure, Failure::nxdomain);
  ASSERT_TRUE(after && !after->ok());
  EXPECT_EQ(after->error().failure, Failure::nxdomain) << after->error().message;
}

TEST_F(DnsResolverTest, NegativeCacheCapBoundsTheNegativeTtl) {
  options_.negative_ttl_cap_s = 0;  // negative answers are not kept at all
  std::optional<MxResult> after;
  run([&]() -> io::Task<void> {
    (void)co_await resolver().resolve_mx("no-such-domain.test");
    dnsmasq_.stop();
    after = co_await resolver().resolve_mx("no-such-domain.test");
  });
  ASSERT_TRUE(after && !after->ok());
  EXPECT_EQ(after->error().failure, Failure::temporary);
}

TEST_F(DnsResolverTest, BestMxBeingUsIsReportedAsALoop) {
  MxResult route = mx("mx.test");
  ASSERT_TRUE(route.ok());
  const std::vector<IpAddress> ours = {*IpAddress::parse("192.0.2.2")};  // b.mx.test, preference 20
  auto trimmed = drop_ourselves(*route, ours);
  ASSERT_TRUE(trimmed.ok());
  ASSERT_EQ(trimmed->hosts.size(), 1u);
  EXPECT_EQ(trimmed->hosts[0].name, "a.mx.test");
  const std::vector<IpAddress> best = {*IpAddress::parse("192.0.2.1")};
  auto looped = drop_ourselves(*route, best);
  ASSERT_FALSE(looped.ok());
  EXPECT_EQ(looped.error().enhanced_code(), "5.4.6");
}

TEST_F(DnsResolverTest, ConcurrentLookupsShareTheChannel) {
  std::vector<MxResult> results;
  int done = 0;
  run([&]() -> io::Task<void> {
    // Three lookups in flight at once, each a detached task on the loop.
    results.reserve(3);
    for (const char* d : {"mx.test", "implicit.test", "null.test"}) {
      io::spawn([](Resolver& r, std::string domain, std::vector<MxResult>* out, int* count) -> io::Task<void> {
        out->push_back(co_await r.resolve_mx(domain));
        ++*count;
      }(resolver(), d, &results, &done));
    }
    for (int i = 0; i < 300 && done < 3; ++i) co_await loop_->sleep(10);
  });
  ASSERT_EQ(done, 3);
  int ok = 0;
  for (const auto& r : results) ok += r.ok();
  EXPECT_EQ(ok, 2);  // null.test fails, the other two resolve
}

}  // namespace
}  // namespace tern::dns
