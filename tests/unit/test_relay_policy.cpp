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
    Config config;
  Config::Relay& relay = config.relay;
    relay.local_domains = {"Local.Test", "other-local.test"};
    relay.relay_domains = {"relay.test"};
    relay.trusted_networks = {"127.0.0.0/8", "::1/128", "10.0.0.0/8"};
    auto built = RelayPolicy::build(config);
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
    EXPECT_EQ(policy_.decide(RelayClient{client}, mailbox("user", "local.test")).decision, Decision::local) << client;
    EXPECT_EQ(policy_.decide(RelayClient{client}, mailbox("User", "LOCAL.Test")).decision, Decision::local) << client;
    EXPECT_EQ(policy_.decide(RelayClient{client}, mailbox("user.name+tag", "other-local.test")).decision, Decision::local) << client;
  }
}

TEST_F(RelayPolicyTest, RelayDomainAcceptedFromAnyone) {
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, mailbox("user", "relay.test")).decision, Decision::relay_domain);
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted6}, mailbox("user", "RELAY.TEST")).decision, Decision::relay_domain);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("user", "relay.test")).decision, Decision::relay_domain);
}

TEST_F(RelayPolicyTest, OtherDomainDeniedForUntrustedClients) {
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, mailbox("user", "elsewhere.example")).decision, Decision::denied);
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted6}, mailbox("user", "elsewhere.example")).decision, Decision::denied);
  EXPECT_EQ(policy_.decide(RelayClient{"::ffff:198.51.100.20"}, mailbox("user", "elsewhere.example")).decision, Decision::denied);
  EXPECT_EQ(policy_.decide(RelayClient{""}, mailbox("user", "elsewhere.example")).decision, Decision::denied);
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, mailbox("user", "sub.local.test")).decision, Decision::denied);
}

TEST_F(RelayPolicyTest, OtherDomainRelayedForTrustedClients) {
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("user", "elsewhere.example")).decision, Decision::permitted);
  EXPECT_EQ(policy_.decide(RelayClient{"127.0.0.1"}, mailbox("user", "elsewhere.example")).decision, Decision::permitted);
  EXPECT_EQ(policy_.decide(RelayClient{"::1"}, mailbox("user", "elsewhere.example")).decision, Decision::permitted);
  EXPECT_EQ(policy_.decide(RelayClient{"::ffff:127.0.0.1"}, mailbox("user", "elsewhere.example")).decision, Decision::permitted);
}

TEST_F(RelayPolicyTest, PostmasterWithoutDomainIsLocalForAnyone) {
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, mailbox("postmaster", "")).decision, Decision::local);
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, mailbox("PostMaster", "")).decision, Decision::local);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("postmaster", "")).decision, Decision::local);
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, mailbox("abuse", "")).decision, Decision::denied);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("user", "")).decision, Decision::denied);
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
    EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, rcpt).decision, Decision::denied) << rcpt.str();
    EXPECT_EQ(policy_.decide(RelayClient{kUntrusted6}, rcpt).decision, Decision::denied) << rcpt.str();
    EXPECT_EQ(policy_.decide(RelayClient{"::ffff:198.51.100.20"}, rcpt).decision, Decision::denied) << rcpt.str();
  }
}

TEST_F(RelayPolicyTest, RelayTricksAllowedForTrustedClients) {
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("user%evil.example", "local.test")).decision, Decision::local);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("evil.example!user", "local.test")).decision, Decision::local);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, quoted_mailbox("\"user@evil.example\"", "local.test")).decision, Decision::local);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("user%x", "relay.test")).decision, Decision::relay_domain);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("user", "evil.example.")).decision, Decision::permitted);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("user", "local.test.")).decision, Decision::local);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, mailbox("user", "relay.test.")).decision, Decision::relay_domain);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, literal_mailbox("user", "[192.0.2.1]")).decision, Decision::permitted);
  EXPECT_EQ(policy_.decide(RelayClient{"::1"}, literal_mailbox("user", "[IPv6:2001:db8::1]")).decision, Decision::permitted);
}

TEST_F(RelayPolicyTest, SourceRouteIsDecidedOnTheFinalMailbox) {
  smtp::Address local = mailbox("user", "local.test");
  local.source_route = true;
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, local).decision, Decision::local);

  smtp::Address foreign = mailbox("user", "elsewhere.example");
  foreign.source_route = true;
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, foreign).decision, Decision::denied);
  EXPECT_EQ(policy_.decide(RelayClient{kTrusted}, foreign).decision, Decision::permitted);
}

TEST_F(RelayPolicyTest, QuotedLocalPartWithoutRoutingCharactersIsLocal) {
  EXPECT_EQ(policy_.decide(RelayClient{kUntrusted}, quoted_mailbox("\"john smith\"", "local.test")).decision, Decision::local);
}

TEST(RelayPolicyBuild, RejectsBadNetworkAndNamesIt) {
  Config config;
  Config::Relay& relay = config.relay;
  relay.trusted_networks = {"127.0.0.0/8", "10.0.0.0/40"};
  auto built = RelayPolicy::build(config);
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.error().find("10.0.0.0/40"), std::string::npos) << built.error();
  EXPECT_NE(built.error().find("relay.trusted_networks"), std::string::npos) << built.error();
}

TEST(RelayPolicyBuild, RejectsEmptyDomain) {
  Config config;
  Config::Relay& relay = config.relay;
  relay.local_domains = {"local.test", ""};
  EXPECT_FALSE(RelayPolicy::build(config).ok());
  relay.local_domains = {"local.test"};
  relay.relay_domains = {""};
  EXPECT_FALSE(RelayPolicy::build(config).ok());
}

TEST(RelayPolicyBuild, AddressLiteralIsDeniedForUntrustedClientsEvenWhenListedAsLocal) {
  Config config;
  Config::Relay& relay = config.relay;
  relay.local_domains = {"[192.0.2.1]"};
  relay.trusted_networks = {"10.0.0.0/8"};
  auto built = RelayPolicy::build(config);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built->decide(RelayClient{kUntrusted}, literal_mailbox("user", "[192.0.2.1]")).decision, Decision::denied);
  EXPECT_EQ(built->decide(RelayClient{kTrusted}, literal_mailbox("user", "[192.0.2.1]")).decision, Decision::local);
}

TEST(RelayPolicyBuild, DefaultConfigTrustsOnlyLoopback) {
  auto built = RelayPolicy::build(Config{});
  ASSERT_TRUE(built.ok()) << built.error();
  const RelayPolicy& policy = *built;
  EXPECT_EQ(policy.decide(RelayClient{"127.0.0.1"}, mailbox("user", "elsewhere.example")).decision, Decision::permitted);
  EXPECT_EQ(policy.decide(RelayClient{"::1"}, mailbox("user", "elsewhere.example")).decision, Decision::permitted);
  EXPECT_EQ(policy.decide(RelayClient{"::ffff:127.0.0.1"}, mailbox("user", "elsewhere.example")).decision, Decision::permitted);
  EXPECT_EQ(policy.decide(RelayClient{"192.0.2.1"}, mailbox("user", "elsewhere.example")).decision, Decision::denied);
  EXPECT_EQ(policy.decide(RelayClient{"::2"}, mailbox("user", "elsewhere.example")).decision, Decision::denied);
}

TEST(RelayPolicyBuild, NoTrustedNetworksMeansNobodyRelays) {
  Config config;
  Config::Relay& relay = config.relay;
  relay.trusted_networks = {};
  relay.local_domains = {"local.test"};
  auto built = RelayPolicy::build(config);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built->decide(RelayClient{"127.0.0.1"}, mailbox("user", "elsewhere.example")).decision, Decision::denied);
  EXPECT_EQ(built->decide(RelayClient{"127.0.0.1"}, mailbox("user", "local.test")).decision, Decision::local);
}


// ---- relay modes ----

RelayPolicy policy_for(std::string mode, std::string require = "none", bool percent_routing = false) {
  Config config;
  config.relay.mode = std::move(mode);
  config.relay.local_domains = {"local.test", "other-local.test"};
  config.relay.relay_domains = {"relay.test"};
  config.relay.trusted_networks = {"10.0.0.0/8"};
  config.relay.percent_routing = percent_routing;
  config.auth.require = std::move(require);
  auto built = RelayPolicy::build(config);
  EXPECT_TRUE(built.ok()) << (built.ok() ? "" : built.error());
  return built.ok() ? *built : RelayPolicy{};
}

struct ModeCase {
  const char* mode;
  Decision untrusted_relay_domain, untrusted_other, trusted_other, authenticated_other, pop_other;
};

TEST(RelayModes, EachModeDecidesAsTheOldSystemDid) {
  const Decision L = Decision::local, R = Decision::relay_domain, P = Decision::permitted, D = Decision::denied;
  (void)L;
  const ModeCase cases[] = {
      {"allow_all", P, P, P, P, P},
      {"block_all", D, D, D, D, D},
      {"domains", R, D, D, P, D},
      {"addresses", D, D, P, P, D},
      {"domains_and_addresses", R, D, P, P, D},
      {"pop_before_smtp", D, D, D, P, P},
  };
  for (const ModeCase& c : cases) {
    const RelayPolicy p = policy_for(c.mode);
    EXPECT_EQ(p.decide(RelayClient{kUntrusted}, mailbox("u", "relay.test")).decision, c.untrusted_relay_domain)
        << c.mode;
    EXPECT_EQ(p.decide(RelayClient{kUntrusted}, mailbox("u", "elsewhere.example")).decision, c.untrusted_other)
        << c.mode;
    EXPECT_EQ(p.decide(RelayClient{kTrusted}, mailbox("u", "elsewhere.example")).decision, c.trusted_other) << c.mode;
    EXPECT_EQ(p.decide(RelayClient{kUntrusted, true, false}, mailbox("u", "elsewhere.example")).decision,
              c.authenticated_other)
        << c.mode;
    EXPECT_EQ(p.decide(RelayClient{kUntrusted, false, true}, mailbox("u", "elsewhere.example")).decision, c.pop_other)
        << c.mode;
    // Local domains are accepted in every mode, from anyone.
    EXPECT_EQ(p.decide(RelayClient{kUntrusted}, mailbox("u", "local.test")).decision, Decision::local) << c.mode;
    EXPECT_EQ(p.mode(), parse_relay_mode(c.mode));
  }
}

TEST(RelayModes, UnknownModeIsRefused) {
  Config config;
  config.relay.mode = "open";
  EXPECT_FALSE(RelayPolicy::build(config).ok());
  EXPECT_EQ(parse_relay_mode("open"), std::nullopt);
  EXPECT_EQ(relay_mode_name(RelayMode::pop_before_smtp), "pop_before_smtp");
}

TEST(RelayModes, RequiringAuthLeavesOnlyAuthenticatedClientsRelaying) {
  const RelayPolicy p = policy_for("domains_and_addresses", "relay");
  EXPECT_EQ(p.decide(RelayClient{kTrusted}, mailbox("u", "elsewhere.example")).decision, Decision::denied);
  EXPECT_EQ(p.decide(RelayClient{kUntrusted}, mailbox("u", "relay.test")).decision, Decision::denied);
  EXPECT_EQ(p.decide(RelayClient{kUntrusted, true, false}, mailbox("u", "elsewhere.example")).decision,
            Decision::permitted);
  EXPECT_EQ(p.decide(RelayClient{kUntrusted}, mailbox("u", "local.test")).decision, Decision::local);
}

TEST(RelayModes, TricksAreRefusedWithTheirReason) {
  const RelayPolicy p = policy_for("domains");
  const RelayClient client{kUntrusted};
  EXPECT_EQ(p.decide(client, mailbox("u%evil.example", "local.test")).reason, "percent hack");
  EXPECT_EQ(p.decide(client, mailbox("evil.example!u", "local.test")).reason, "bang path");
  EXPECT_EQ(p.decide(client, quoted_mailbox("\"u@evil.example\"", "local.test")).reason, "quoted local part with @");
  EXPECT_EQ(p.decide(client, mailbox("u", "local.test.")).reason, "trailing dot");
  EXPECT_EQ(p.decide(client, literal_mailbox("u", "[192.0.2.1]")).reason, "address literal");
  EXPECT_EQ(p.decide(client, mailbox("u", "elsewhere.example")).reason, "relay not permitted");
}

TEST(RelayModes, PercentRoutingOnlyBetweenLocalDomains) {
  const RelayPolicy off = policy_for("domains");
  const RelayPolicy on = policy_for("domains", "none", true);
  const RelayClient client{kUntrusted};
  EXPECT_EQ(off.decide(client, mailbox("u%other-local.test", "local.test")).decision, Decision::denied);
  EXPECT_EQ(on.decide(client, mailbox("u%other-local.test", "local.test")).decision, Decision::local);
  EXPECT_EQ(on.decide(client, quoted_mailbox("\"u%other-local.test\"", "local.test")).decision, Decision::local);
  EXPECT_EQ(on.decide(client, mailbox("u%evil.example", "local.test")).decision, Decision::denied);
  EXPECT_EQ(on.decide(client, mailbox("u%other-local.test", "relay.test")).decision, Decision::denied);
  // One hop only: a chain leaves through the last local domain.
  EXPECT_EQ(on.decide(client, mailbox("u%evil.example%other-local.test", "local.test")).decision, Decision::denied);
  EXPECT_EQ(on.decide(client, mailbox("u%evil.example%local.test", "local.test")).decision, Decision::denied);
  EXPECT_EQ(on.decide(client, mailbox("%local.test", "local.test")).decision, Decision::denied);
  EXPECT_EQ(on.decide(client, mailbox("u%%local.test", "local.test")).decision, Decision::denied);
}

}  // namespace
}  // namespace tern
