#include <gtest/gtest.h>

#include "dns/address.h"
#include "dns/hosts.h"

namespace tern::dns {
namespace {

TEST(DnsHosts, ParsesHostsSyntax) {
  auto table = HostsTable::parse(
      "# local overrides\n"
      "192.0.2.10   relay.example.test  relay   # trailing comment\n"
      "\n"
      "2001:db8::10\trelay.example.test\r\n"
      "192.0.2.20 Other.Example.Test\n");
  ASSERT_TRUE(table.ok()) << table.error();
  const auto* relay = table->find("RELAY.example.test.");
  ASSERT_NE(relay, nullptr);
  ASSERT_EQ(relay->size(), 2u);
  EXPECT_EQ((*relay)[0].to_string(), "192.0.2.10");
  EXPECT_EQ((*relay)[1].to_string(), "2001:db8::10");
  ASSERT_NE(table->find("relay"), nullptr);
  ASSERT_NE(table->find("other.example.test"), nullptr);
  EXPECT_EQ(table->find("missing.example.test"), nullptr);
}

TEST(DnsHosts, ErrorsNameTheLine) {
  auto bad = HostsTable::parse("192.0.2.1 ok.test\nnot-an-ip name.test\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("line 2"), std::string::npos) << bad.error();
  auto nameless = HostsTable::parse("\n\n192.0.2.1\n");
  ASSERT_FALSE(nameless.ok());
  EXPECT_NE(nameless.error().find("line 3"), std::string::npos) << nameless.error();
}

TEST(DnsHosts, DuplicateAddressIsKeptOnce) {
  HostsTable table;
  table.add("a.test", *IpAddress::parse("192.0.2.1"));
  table.add("A.test", *IpAddress::parse("192.0.2.1"));
  EXPECT_EQ(table.find("a.test")->size(), 1u);
}

TEST(DnsAddress, ParseAndPrint) {
  EXPECT_EQ(IpAddress::parse("192.0.2.1")->to_string(), "192.0.2.1");
  EXPECT_EQ(IpAddress::parse("2001:DB8::1")->to_string(), "2001:db8::1");
  auto mapped = IpAddress::parse("::ffff:192.0.2.1");
  ASSERT_TRUE(mapped);
  EXPECT_EQ(mapped->family, IpAddress::Family::v4);
  EXPECT_EQ(*mapped, *IpAddress::parse("192.0.2.1"));
  EXPECT_FALSE(IpAddress::parse("192.0.2"));
  EXPECT_FALSE(IpAddress::parse("example.test"));
  EXPECT_FALSE(IpAddress::parse(""));
  EXPECT_TRUE(IpAddress::parse("0.0.0.0")->is_unspecified());
  EXPECT_TRUE(IpAddress::parse("::")->is_unspecified());
  EXPECT_FALSE(IpAddress::parse("::1")->is_unspecified());
}

TEST(DnsAddress, AddressLiterals) {
  auto v4 = parse_address_literal("[192.0.2.1]");
  EXPECT_EQ(v4.kind, LiteralKind::address);
  EXPECT_EQ(v4.address.to_string(), "192.0.2.1");
  auto v6 = parse_address_literal("[IPv6:2001:db8::1]");
  EXPECT_EQ(v6.kind, LiteralKind::address);
  EXPECT_EQ(v6.address.to_string(), "2001:db8::1");
  EXPECT_EQ(parse_address_literal("[ipv6:::1]").kind, LiteralKind::address);
  EXPECT_EQ(parse_address_literal("example.test").kind, LiteralKind::not_literal);
  for (const char* bad : {"[example.test]", "[2001:db8::1]", "[IPv6:192.0.2.1]", "[192.0.2.1", "[]", "[IPv6:]"})
    EXPECT_EQ(parse_address_literal(bad).kind, LiteralKind::malformed) << bad;
}

}  // namespace
}  // namespace tern::dns
