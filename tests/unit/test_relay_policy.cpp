#include <gtest/gtest.h>

#include "mta/relay_policy.h"

namespace tern {
namespace {

using Decision = RelayPolicy::Decision;

Network parse_ok(std::string_view text) {
  auto net = Network::parse(text);
  EXPECT_TRUE(net.ok()) << text << ": " << (net.ok() ? "" : net.error());
  return net.ok() ? *net : Network{};
}

TEST(Network, Ipv4PrefixBoundaries) {
  const Network net = parse_ok("10.0.0.0/8");
  EXPECT_FALSE(net.v6);
  EXPECT_EQ(net.prefix, 8u);
  EXPECT_TRUE(net.contains("10.0.0.0"));
  EXPECT_TRUE(net.contains("10.255.255.255"));
  EXPECT_FALSE(net.contains("11.0.0.0"));
  EXPECT_FALSE(net.contains("9.255.255.255"));
}

TEST(Network, Ipv4PrefixNotOnByteBoundary) {
  const Network net = parse_ok("192.168.0.0/23");
  EXPECT_TRUE(net.contains("192.168.1.255"));
  EXPECT_FALSE(net.contains("192.168.2.0"));
}

TEST(Network, Ipv4ZeroPrefixMatchesEveryIpv4AddressButNoIpv6) {
  const Network net = parse_ok("0.0.0.0/0");
  EXPECT_TRUE(net.contains("0.0.0.0"));
  EXPECT_TRUE(net.contains("255.255.255.255"));
  EXPECT_FALSE(net.contains("::1"));
  EXPECT_FALSE(net.contains("2001:db8::1"));
}

TEST(Network, HostWithoutPrefixAndSlash32MatchOnlyThatAddress) {
  for (const char* text : {"192.0.2.7", "192.0.2.7/32"}) {
    const Network net = parse_ok(text);
    EXPECT_EQ(net.prefix, 32u) << text;
    EXPECT_TRUE(net.contains("192.0.2.7")) << text;
    EXPECT_FALSE(net.contains("192.0.2.6")) << text;
    EXPECT_FALSE(net.contains("192.0.2.8")) << text;
  }
}

TEST(Network, HostBitsAreCleared) {
  const Network net = parse_ok("10.1.2.3/8");
  EXPECT_EQ(net.addr[0], 10);
  EXPECT_EQ(net.addr[1], 0);
  EXPECT_EQ(net.addr[2], 0);
  EXPECT_EQ(net.addr[3], 0);
  EXPECT_TRUE(net.contains("10.9.9.9"));
}

TEST(Network, Ipv6Slash128AndHost) {
  for (const char* text : {"::1/128", "::1"}) {
    const Network net = parse_ok(text);
    EXPECT_TRUE(net.v6) << text;
    EXPECT_EQ(net.prefix, 128u) << text;
    EXPECT_TRUE(net.contains("::1")) << text;
    EXPECT_TRUE(net.contains("0:0:0:0:0:0:0:1")) << text;
    EXPECT_FALSE(net.contains("::2")) << text;
    EXPECT_FALSE(net.contains("127.0.0.1")) << text;
  }
}

TEST(Network, Ipv6Prefixes) {
  const Network doc = parse_ok("2001:db8::/32");
  EXPECT_TRUE(doc.contains("2001:db8::1"));
  EXPECT_TRUE(doc.contains("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(doc.contains("2001:db9::"));

  const Network odd = parse_ok("2001:db8::/33");
  EXPECT_TRUE(odd.contains("2001:db8:7fff::1"));
  EXPECT_FALSE(odd.contains("2001:db8:8000::"));

  const Network all = parse_ok("::/0");
  EXPECT_TRUE(all.contains("::"));
  EXPECT_TRUE(all.contains("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(all.contains("192.0.2.1"));
}

TEST(Network, Ipv4MappedClientMatchesIpv4Network) {
  const Network loopback = parse_ok("127.0.0.0/8");
  EXPECT_TRUE(loopback.contains("::ffff:127.0.0.1"));
  EXPECT_TRUE(loopback.contains("::FFFF:127.1.2.3"));
  EXPECT_TRUE(loopback.contains("::ffff:7f00:1"));  // the same address in hex
  EXPECT_FALSE(loopback.contains("::ffff:128.0.0.1"));

  const Network host = parse_ok("192.0.2.7");
  EXPECT_TRUE(host.contains("::ffff:192.0.2.7"));
  EXPECT_FALSE(host.contains("::ffff:192.0.2.8"));
}

TEST(Network, Ipv4MappedClientIsNotAnIpv6Address) {
  // An IPv4 client on a dual-stack socket must be judged as IPv4 only.
  EXPECT_FALSE(parse_ok("::/0").contains("::ffff:192.0.2.1"));
  const Network wider_than_mapped = parse_ok("::ffff:0:0/95");
  EXPECT_TRUE(wider_than_mapped.v6);
  EXPECT_TRUE(wider_than_mapped.contains("::fffe:c000:201"));
  EXPECT_FALSE(wider_than_mapped.contains("::ffff:192.0.2.1"));
}

TEST(Network, Ipv4MappedNetworkIsAnIpv4Network) {
  const Network net = parse_ok("::ffff:10.0.0.0/104");
  EXPECT_FALSE(net.v6);
  EXPECT_EQ(net.prefix, 8u);
  EXPECT_TRUE(net.contains("10.1.2.3"));
  EXPECT_TRUE(net.contains("::ffff:10.1.2.3"));
  EXPECT_FALSE(net.contains("11.0.0.1"));

  const Network host = parse_ok("::ffff:192.0.2.1");
  EXPECT_FALSE(host.v6);
  EXPECT_EQ(host.prefix, 32u);
  EXPECT_TRUE(host.contains("192.0.2.1"));
}

TEST(Network, RejectsJunk) {
  for (const char* text : {"",
                           "/8",
                           "10.0.0.0/",
                           "10.0.0.0/33",
                           "::/129",
                           "10.0.0.0/-1",
                           "10.0.0.0/+8",
                           "10.0.0.0/8/8",
                           "10.0.0.0/0x8",
                           "10.0.0.0/1000",
                           "10.0.0",
                           "256.0.0.1",
                           "10.0.0.0 /8",
                           " 10.0.0.0",
                           "example.com",
                           "fe80::1%eth0",
                           "[::1]",
                           "::ffff:10.0.0.0/129",
                           "1.2.3.4.5",
                           ":::"}) {
    auto net = Network::parse(text);
    EXPECT_FALSE(net.ok()) << "accepted \"" << text << "\"";
  }
}

TEST(Network, ErrorNamesTheInputAndTheRangeAsWritten) {
  auto v4 = Network::parse("10.0.0.0/33");
  ASSERT_FALSE(v4.ok());
  EXPECT_NE(v4.error().find("10.0.0.0/33"), std::string::npos) << v4.error();
  EXPECT_NE(v4.error().find("0-32"), std::string::npos) << v4.error();
  auto mapped = Network::parse("::ffff:10.0.0.0/129");
  ASSERT_FALSE(mapped.ok());
  EXPECT_NE(mapped.error().find("0-128"), std::string::npos) << mapped.error();
}

TEST(Network, ContainsIsFalseForJunkClientAddresses) {
  const Network all = parse_ok("0.0.0.0/0");
  const Network all6 = parse_ok("::/0");
  for (const char* ip : {"", "garbage", "10.0.0.1/32", "[::1]", "10.0.0.1 ", "::1%lo"}) {
    EXPECT_FALSE(all.contains(ip)) << ip;
    EXPECT_FALSE(all6.contains(ip)) << ip;
  }
}

smtp::Address mailbox(std::string local, std::string domain) {
  smtp::Address a;
  a.local_part = std::move(local);
  a.domain = std::move(domain);
  return a;
}

smtp::Address quoted_mailbox(std::string local, std::string domain) {
  smtp::Address a = mailbox(std::move(local), std::move(domain));
  a.quoted_local = true;
  return a;
}

smtp::Address literal_mailbox(std::string local, std::string literal) {
  smtp::Address a = mailbox(std::move(local), std::move(literal));
  a.domain_literal = true;
  return a;
}

constexpr const char* kUntrusted = "198.51.100.20";
constexpr const char* kUntrusted6 = "2001:db8::20";
constexpr const char* kTrusted = "10.1.2.3";

class RelayPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Config::Relay relay;
    relay.local_domains = {"Local.Test", "other-local.test"};
    relay.relay_domains = {"relay.test"};
    relay.trusted_networks = {"127.0.0.0/8", "::1/128", "10.0.0.0/8"};
    auto built = RelayPolicy::build(relay);
    ASSERT_TRUE(built.ok()) << built.error();
    policy_ = *built;
  }
  RelayPolicy policy_;
};

TEST_F(RelayPolicyTest, TrustIsByNetwork) {
  EXPECT_TRUE(policy_.is_trusted("127.0.0.1"));
  EXPECT_TRUE(policy_.is_trusted("::1"));
  EXPECT_TRUE(policy_.is_trusted("::ffff:127.0.0.1"));
  EXPECT_TRUE(policy_.is_trusted(kTrusted));
  EXPECT_FALSE(policy_.is_trusted(kUntrusted));
  EXPECT_FALSE(policy_.is_trusted(kUntrusted6));
  EXPECT_FALSE(policy_.is_trusted("::ffff:198.51.100.20"));
  EXPECT_FALSE(policy_.is_trusted(""));
}

TEST_F(RelayPolicyTest, DomainMatchingIsCaseInsensitiveAndExact) {
  EXPECT_TRUE(policy_.is_local_domain("local.test"));
  EXPECT_TRUE(policy_.is_local_domain("LOCAL.TEST"));
  EXPECT_TRUE(policy_.is_local_domain("other-local.test"));
  EXPECT_FALSE(policy_.is_local_domain("sub.local.test"));
  EXPECT_FALSE(policy_.is_local_domain("local.test.evil.example"));
  EXPECT_FALSE(policy_.is_local_domain("ocal.test"));
  EXPECT_FALSE(policy_.is_local_domain("relay.test"));
  EXPECT_TRUE(policy_.is_relay_domain("Relay.Test"));
  EXPECT_FALSE(policy_.is_relay_domain("sub.relay.test"));
  EXPECT_FALSE(policy_.is_relay_domain("local.test"));
}

TEST_F(RelayPolicyTest, LocalDomainAcceptedFromAnyone) {
  for (const char* client : {kUntrusted, kUntrusted6, kTrusted, "::1"}) {
    EXPECT_EQ(policy_.decide(client, mailbox("user", "local.test")), Decision::local) << client;
    EXPECT_EQ(policy_.decide(client, mailbox("User", "LOCAL.Test")), Decision::local) << client;
    EXPECT_EQ(policy_.decide(client, mailbox("user.name+tag", "other-local.test")), Decision::local) << client;
  }
}

TEST_F(RelayPolicyTest, RelayDomainAcceptedFromAnyone) {
  EXPECT_EQ(policy_.decide(kUntrusted, mailbox("user", "relay.test")), Decision::relay_domain);
  EXPECT_EQ(policy_.decide(kUntrusted6, mailbox("user", "RELAY.TEST")), Decision::relay_domain);
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("user", "relay.test")), Decision::relay_domain);
}

TEST_F(RelayPolicyTest, OtherDomainDeniedForUntrustedClients) {
  EXPECT_EQ(policy_.decide(kUntrusted, mailbox("user", "elsewhere.example")), Decision::denied);
  EXPECT_EQ(policy_.decide(kUntrusted6, mailbox("user", "elsewhere.example")), Decision::denied);
  EXPECT_EQ(policy_.decide("::ffff:198.51.100.20", mailbox("user", "elsewhere.example")), Decision::denied);
  EXPECT_EQ(policy_.decide("", mailbox("user", "elsewhere.example")), Decision::denied);
  EXPECT_EQ(policy_.decide(kUntrusted, mailbox("user", "sub.local.test")), Decision::denied);
}

TEST_F(RelayPolicyTest, OtherDomainRelayedForTrustedClients) {
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("user", "elsewhere.example")), Decision::trusted);
  EXPECT_EQ(policy_.decide("127.0.0.1", mailbox("user", "elsewhere.example")), Decision::trusted);
  EXPECT_EQ(policy_.decide("::1", mailbox("user", "elsewhere.example")), Decision::trusted);
  EXPECT_EQ(policy_.decide("::ffff:127.0.0.1", mailbox("user", "elsewhere.example")), Decision::trusted);
}

TEST_F(RelayPolicyTest, PostmasterWithoutDomainIsLocalForAnyone) {
  EXPECT_EQ(policy_.decide(kUntrusted, mailbox("postmaster", "")), Decision::local);
  EXPECT_EQ(policy_.decide(kUntrusted, mailbox("PostMaster", "")), Decision::local);
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("postmaster", "")), Decision::local);
  EXPECT_EQ(policy_.decide(kUntrusted, mailbox("abuse", "")), Decision::denied);
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("user", "")), Decision::denied);
}

TEST_F(RelayPolicyTest, RelayTricksDeniedForUntrustedClients) {
  const smtp::Address tricks[] = {
      mailbox("user%evil.example", "local.test"),             // percent hack
      mailbox("evil.example!user", "local.test"),             // bang path
      quoted_mailbox("\"user@evil.example\"", "local.test"),  // quoted '@'
      quoted_mailbox("\"user%evil.example\"", "relay.test"),
      mailbox("user", "evil.example."),  // trailing dot
      mailbox("user", "local.test."),    // trailing dot on our own domain
      mailbox("user", "relay.test."),
      literal_mailbox("user", "[192.0.2.1]"),  // address literal
      literal_mailbox("user", "[IPv6:2001:db8::1]"),
  };
  for (const auto& rcpt : tricks) {
    EXPECT_EQ(policy_.decide(kUntrusted, rcpt), Decision::denied) << rcpt.str();
    EXPECT_EQ(policy_.decide(kUntrusted6, rcpt), Decision::denied) << rcpt.str();
    EXPECT_EQ(policy_.decide("::ffff:198.51.100.20", rcpt), Decision::denied) << rcpt.str();
  }
}

TEST_F(RelayPolicyTest, RelayTricksAllowedForTrustedClients) {
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("user%evil.example", "local.test")), Decision::local);
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("evil.example!user", "local.test")), Decision::local);
  EXPECT_EQ(policy_.decide(kTrusted, quoted_mailbox("\"user@evil.example\"", "local.test")), Decision::local);
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("user%x", "relay.test")), Decision::relay_domain);
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("user", "evil.example.")), Decision::trusted);
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("user", "local.test.")), Decision::local);
  EXPECT_EQ(policy_.decide(kTrusted, mailbox("user", "relay.test.")), Decision::relay_domain);
  EXPECT_EQ(policy_.decide(kTrusted, literal_mailbox("user", "[192.0.2.1]")), Decision::trusted);
  EXPECT_EQ(policy_.decide("::1", literal_mailbox("user", "[IPv6:2001:db8::1]")), Decision::trusted);
}

TEST_F(RelayPolicyTest, SourceRouteIsDecidedOnTheFinalMailbox) {
  smtp::Address local = mailbox("user", "local.test");
  local.source_route = true;
  EXPECT_EQ(policy_.decide(kUntrusted, local), Decision::local);

  smtp::Address foreign = mailbox("user", "elsewhere.example");
  foreign.source_route = true;
  EXPECT_EQ(policy_.decide(kUntrusted, foreign), Decision::denied);
  EXPECT_EQ(policy_.decide(kTrusted, foreign), Decision::trusted);
}

TEST_F(RelayPolicyTest, QuotedLocalPartWithoutRoutingCharactersIsLocal) {
  EXPECT_EQ(policy_.decide(kUntrusted, quoted_mailbox("\"john smith\"", "local.test")), Decision::local);
}

TEST(RelayPolicyBuild, RejectsBadNetworkAndNamesIt) {
  Config::Relay relay;
  relay.trusted_networks = {"127.0.0.0/8", "10.0.0.0/40"};
  auto built = RelayPolicy::build(relay);
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.error().find("10.0.0.0/40"), std::string::npos) << built.error();
  EXPECT_NE(built.error().find("relay.trusted_networks"), std::string::npos) << built.error();
}

TEST(RelayPolicyBuild, RejectsEmptyDomain) {
  Config::Relay relay;
  relay.local_domains = {"local.test", ""};
  EXPECT_FALSE(RelayPolicy::build(relay).ok());
  relay.local_domains = {"local.test"};
  relay.relay_domains = {""};
  EXPECT_FALSE(RelayPolicy::build(relay).ok());
}

TEST(RelayPolicyBuild, AddressLiteralIsDeniedForUntrustedClientsEvenWhenListedAsLocal) {
  Config::Relay relay;
  relay.local_domains = {"[192.0.2.1]"};
  relay.trusted_networks = {"10.0.0.0/8"};
  auto built = RelayPolicy::build(relay);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built->decide(kUntrusted, literal_mailbox("user", "[192.0.2.1]")), Decision::denied);
  EXPECT_EQ(built->decide(kTrusted, literal_mailbox("user", "[192.0.2.1]")), Decision::local);
}

TEST(RelayPolicyBuild, DefaultConfigTrustsOnlyLoopback) {
  auto built = RelayPolicy::build(Config{}.relay);
  ASSERT_TRUE(built.ok()) << built.error();
  const RelayPolicy& policy = *built;
  EXPECT_EQ(policy.decide("127.0.0.1", mailbox("user", "elsewhere.example")), Decision::trusted);
  EXPECT_EQ(policy.decide("::1", mailbox("user", "elsewhere.example")), Decision::trusted);
  EXPECT_EQ(policy.decide("::ffff:127.0.0.1", mailbox("user", "elsewhere.example")), Decision::trusted);
  EXPECT_EQ(policy.decide("192.0.2.1", mailbox("user", "elsewhere.example")), Decision::denied);
  EXPECT_EQ(policy.decide("::2", mailbox("user", "elsewhere.example")), Decision::denied);
}

TEST(RelayPolicyBuild, NoTrustedNetworksMeansNobodyRelays) {
  Config::Relay relay;
  relay.trusted_networks = {};
  relay.local_domains = {"local.test"};
  auto built = RelayPolicy::build(relay);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built->decide("127.0.0.1", mailbox("user", "elsewhere.example")), Decision::denied);
  EXPECT_EQ(built->decide("127.0.0.1", mailbox("user", "local.test")), Decision::local);
}

}  // namespace
}  // namespace tern
