#include "mta/delivery/router.h"

#include <gtest/gtest.h>

#include "mta/delivery/hop_spec.h"

namespace tern::delivery {
namespace {

NextHop relay(std::string host, uint16_t port) {
  NextHop h;
  h.kind = NextHop::Kind::relay;
  h.host = std::move(host);
  h.port = port;
  return h;
}

RoutingTable table() {
  RoutingTable t;
  t.local_domains = {"local.test"};
  NextHop mx_other;
  mx_other.kind = NextHop::Kind::mx;
  mx_other.host = "other.test";
  t.transport = {{"*.corp.test", relay("[10.0.0.5]", 2525)},
                 {"*.eu.corp.test", relay("eu-gw.test", 25)},
                 {"corp.test", relay("hq.test", 587)},
                 {"alias.test", mx_other}};
  return t;
}

TEST(Router, LocalDomainsComeFirstWhateverTheCase) {
  Router r(table());
  EXPECT_EQ(r.route("bob@LOCAL.test", true).kind, NextHop::Kind::local);
  EXPECT_EQ(r.route("bob@local.test.", true).via, "local");
}

TEST(Router, TransportExactBeforeWildcardAndMostSpecificWildcardWins) {
  Router r(table());
  EXPECT_EQ(r.route("a@corp.test", true).host, "hq.test");
  EXPECT_EQ(r.route("a@corp.test", true).port, 587);
  EXPECT_EQ(r.route("a@x.corp.test", true).host, "[10.0.0.5]");
  EXPECT_EQ(r.route("a@paris.eu.corp.test", true).host, "eu-gw.test");
  EXPECT_EQ(r.route("a@paris.eu.corp.test", true).via, "transport");
  // A wildcard matches subdomains only, not a look-alike suffix.
  EXPECT_EQ(r.route("a@notcorp.test", true).kind, NextHop::Kind::mx);
  EXPECT_EQ(r.route("a@notcorp.test", true).host, "notcorp.test");
  EXPECT_EQ(r.route("a@alias.test", true).host, "other.test");
}

TEST(Router, FirewallSendsEverythingNonLocalThroughAUsableRouter) {
  RoutingTable t = table();
  t.router = relay("gw.test", 25);
  t.firewall = true;
  Router r(t);
  EXPECT_EQ(r.route("a@anywhere.test", true).host, "gw.test");
  EXPECT_EQ(r.route("a@anywhere.test", true).via, "firewall");
  EXPECT_EQ(r.route("a@local.test", true).kind, NextHop::Kind::local);
  EXPECT_EQ(r.route("a@corp.test", true).via, "transport");
  // A router that did not resolve at start: direct delivery, no fallback.
  EXPECT_EQ(r.route("a@anywhere.test", false).via, "mx");
  EXPECT_FALSE(r.fallback(true));
}

TEST(Router, WithoutFirewallTheRouterIsTheFallbackOnly) {
  RoutingTable t = table();
  t.router = relay("gw.test", 25);
  Router r(t);
  EXPECT_EQ(r.route("a@anywhere.test", true).via, "mx");
  ASSERT_TRUE(r.fallback(true));
  EXPECT_EQ(r.fallback(true)->via, "fallback");
  EXPECT_FALSE(r.fallback(false));
}

TEST(Router, ForwardHostTakesAllNonLocalMailAfterTheTransportTable) {
  RoutingTable t = table();
  t.forward = relay("isp.test", 25);
  Router r(t);
  EXPECT_EQ(r.route("a@anywhere.test", true).via, "forward");
  EXPECT_EQ(r.route("a@corp.test", true).via, "transport");
  EXPECT_EQ(r.route("a@local.test", true).via, "local");
}

TEST(Router, AddressLiteralIsTheHostItself) {
  Router r(table());
  NextHop hop = r.route("a@[192.0.2.7]", true);
  EXPECT_EQ(hop.kind, NextHop::Kind::relay);
  EXPECT_EQ(hop.host, "[192.0.2.7]");
}

TEST(Router, KeysSeparateKindsHostsAndPorts) {
  EXPECT_NE(relay("a.test", 25).key(), relay("a.test", 26).key());
  NextHop mx;
  mx.host = "a.test";
  EXPECT_NE(mx.key(), relay("a.test", 25).key());
  NextHop same = relay("a.test", 25);
  same.via = "transport";  // why a hop was chosen does not split connections
  EXPECT_EQ(same.key(), relay("a.test", 25).key());
}

TEST(Router, KeysSeparateTlsPoliciesAndCredentials) {
  // Hops to one host with a stricter TLS policy or other credentials must not
  // share its connections: a `verify` hop on a `may` connection is a downgrade.
  NextHop verify = relay("a.test", 25);
  verify.tls = TlsPolicy::verify;
  EXPECT_NE(verify.key(), relay("a.test", 25).key());
  NextHop alice = relay("a.test", 25);
  alice.auth = Credentials{"alice", "one"};
  NextHop bob = relay("a.test", 25);
  bob.auth = Credentials{"bob", "one"};
  NextHop alice_other_password = alice;
  alice_other_password.auth->password = "two";
  EXPECT_NE(alice.key(), relay("a.test", 25).key());
  EXPECT_NE(alice.key(), bob.key());
  EXPECT_NE(alice.key(), alice_other_password.key());
  // The user's length is in the key: "a:b" + "c" differs from "a" + "b:c".
  NextHop colon_user = relay("a.test", 25);
  colon_user.auth = Credentials{"a:b", "c"};
  NextHop colon_password = relay("a.test", 25);
  colon_password.auth = Credentials{"a", "b:c"};
  EXPECT_NE(colon_user.key(), colon_password.key());
}

TEST(HopSpec, Forms) {
  auto mx = parse_hop_spec("mx:Other.TEST");
  ASSERT_TRUE(mx);
  EXPECT_TRUE(mx->mx);
  EXPECT_EQ(mx->host, "other.test");
  auto host = parse_hop_spec("relay.test:587");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->host, "relay.test");
  EXPECT_EQ(host->port, 587);
  auto bare = parse_hop_spec("relay.test");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->port, 0);
  auto v4 = parse_hop_spec("[127.0.0.2]:2525");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "[127.0.0.2]");
  auto v6 = parse_hop_spec("[::1]:25");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "[IPv6:::1]");
}

TEST(HopSpec, BadFormsSayWhy) {
  for (const char* bad : {"", "mx:", "[1.2.3]:25", "[127.0.0.1]x", "host:0", "host:70000", "host:", "-bad.test",
                          "a..b", "::1:25", "[127.0.0.1"}) {
    EXPECT_FALSE(parse_hop_spec(bad)) << bad;
  }
}

}  // namespace
}  // namespace tern::delivery
