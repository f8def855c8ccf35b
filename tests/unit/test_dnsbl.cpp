#include <gtest/gtest.h>

#include <string>

#include "mta/policy/dnsbl.h"

namespace tern::policy {
namespace {

dns::IpAddress ip(const char* text) {
  auto a = dns::IpAddress::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(dns::IpAddress{});
}

TEST(DnsblQueryName, Ipv4OctetsReversed) {
  EXPECT_EQ(dnsbl_query_name(ip("192.0.2.1"), "bl.test"), "1.2.0.192.bl.test");
  EXPECT_EQ(dnsbl_query_name(ip("127.0.0.2"), "zen.example"), "2.0.0.127.zen.example");
  EXPECT_EQ(dnsbl_query_name(ip("10.200.3.255"), "bl.test"), "255.3.200.10.bl.test");
}

TEST(DnsblQueryName, TrailingDotOfTheZoneIsDropped) {
  EXPECT_EQ(dnsbl_query_name(ip("192.0.2.1"), "bl.test."), "1.2.0.192.bl.test");
  EXPECT_EQ(dnsbl_query_name(ip("192.0.2.1"), "bl.test"), dnsbl_query_name(ip("192.0.2.1"), "bl.test."));
}

TEST(DnsblQueryName, Ipv6AllNibblesReversed) {
  // RFC 5782 §2.4's example.
  EXPECT_EQ(dnsbl_query_name(ip("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com");
  // Zeros are written out: always 32 labels.
  const std::string name = dnsbl_query_name(ip("2001:db8::1"), "bl.test.");
  EXPECT_EQ(name, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test");
  EXPECT_EQ(std::count(name.begin(), name.end(), '.'), 33);
}

TEST(DnsblQueryName, MappedIpv4IsLookedUpAsIpv4) {
  // parse() already turns ::ffff:a.b.c.d into IPv4; an address built from
  // the 16 mapped octets (as accept() reports it) must give the same name.
  const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
  EXPECT_EQ(dnsbl_query_name(dns::IpAddress::v6(mapped), "bl.test"), "1.2.0.192.bl.test");
  EXPECT_EQ(dnsbl_query_name(ip("::ffff:192.0.2.1"), "bl.test"), "1.2.0.192.bl.test");
  // Not mapped: ::192.0.2.1 (deprecated IPv4-compatible) is plain IPv6.
  const uint8_t compat[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1};
  EXPECT_EQ(dnsbl_query_name(dns::IpAddress::v6(compat), "bl.test"),
            "1.0.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test");
}

TEST(DnsblAnswer, OnlyLoopbackAnswersAreListings) {
  EXPECT_TRUE(is_listing_answer(ip("127.0.0.2")));
  EXPECT_TRUE(is_listing_answer(ip("127.0.0.10")));
  EXPECT_TRUE(is_listing_answer(ip("127.1.2.3")));
  EXPECT_FALSE(is_listing_answer(ip("192.0.2.1")));
  EXPECT_FALSE(is_listing_answer(ip("128.0.0.2")));
  EXPECT_FALSE(is_listing_answer(ip("::1")));
  // Spamhaus' "your query was refused" codes are not listings.
  EXPECT_FALSE(is_listing_answer(ip("127.255.255.254")));
  EXPECT_FALSE(is_listing_answer(ip("127.255.255.255")));
}

TEST(DnsblReason, SanitizedForAnSmtpReply) {
  EXPECT_EQ(sanitize_reason("spam source, see http://bl.test/"), "spam source, see http://bl.test/");
  EXPECT_EQ(sanitize_reason("a\r\n250 ok\x7f\xc3\xa9"), "a??250 ok???");
  EXPECT_EQ(sanitize_reason(std::string(500, 'x')).size(), kMaxReasonLength);
}

}  // namespace
}  // namespace tern::policy
