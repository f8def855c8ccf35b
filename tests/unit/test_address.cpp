#include <gtest/gtest.h>

#include <string>

#include "mta/smtp/address.h"

namespace tern::smtp {
namespace {

Address parse_ok(std::string_view text, bool allow_null = false) {
  auto result = parse_path(text, allow_null, "5.1.3");
  EXPECT_TRUE(std::holds_alternative<Address>(result))
      << text << ": " << (std::holds_alternative<Reply>(result) ? std::get<Reply>(result).text : "");
  return std::holds_alternative<Address>(result) ? std::get<Address>(result) : Address{};
}

void expect_syntax_error(std::string_view text, bool allow_null = false) {
  for (std::string_view code : {"5.1.3", "5.1.7"}) {
    auto result = parse_path(text, allow_null, code);
    ASSERT_TRUE(std::holds_alternative<Reply>(result)) << text;
    EXPECT_EQ(std::get<Reply>(result).code, 501) << text;
    EXPECT_EQ(std::get<Reply>(result).enhanced, code) << text;
    EXPECT_FALSE(std::get<Reply>(result).text.empty()) << text;
  }
}

TEST(ParsePath, SimpleMailbox) {
  const Address a = parse_ok("<user@example.com>");
  EXPECT_EQ(a.local_part, "user");
  EXPECT_EQ(a.domain, "example.com");
  EXPECT_EQ(a.str(), "user@example.com");
  EXPECT_FALSE(a.quoted_local);
  EXPECT_FALSE(a.domain_literal);
  EXPECT_FALSE(a.source_route);
  EXPECT_FALSE(a.utf8);
  EXPECT_FALSE(a.null());
}

TEST(ParsePath, AtextAndDotString) {
  EXPECT_EQ(parse_ok("<first.last@example.com>").local_part, "first.last");
  EXPECT_EQ(parse_ok("<!#$%&'*+-/=?^_`{|}~@example.com>").local_part, "!#$%&'*+-/=?^_`{|}~");
  EXPECT_EQ(parse_ok("<a@b>").domain, "b");
  EXPECT_EQ(parse_ok("<A.B.C@Sub-1.EXAMPLE.org>").str(), "A.B.C@Sub-1.EXAMPLE.org");
}

TEST(ParsePath, NullPath) {
  const Address a = parse_ok("<>", true);
  EXPECT_TRUE(a.null());
  EXPECT_EQ(a.str(), "");
  expect_syntax_error("<>", false);
}

TEST(ParsePath, Postmaster) {
  for (std::string_view text : {"<postmaster>", "<Postmaster>", "<POSTMASTER>"}) {
    const Address a = parse_ok(text);
    EXPECT_EQ(a.local_part, text.substr(1, 10));
    EXPECT_TRUE(a.domain.empty());
    EXPECT_FALSE(a.null());
    EXPECT_EQ(a.str(), text.substr(1, 10));
  }
  EXPECT_EQ(parse_ok("<postmaster>", true).local_part, "postmaster");
  EXPECT_EQ(parse_ok("<Postmaster@example.com>").domain, "example.com");
  expect_syntax_error("<postmasterx>");
  expect_syntax_error("<postmaste>");
  expect_syntax_error("<@relay.example:postmaster>");
}

TEST(ParsePath, QuotedLocalPart) {
  const Address a = parse_ok(R"(<"john doe"@example.com>)");
  EXPECT_TRUE(a.quoted_local);
  EXPECT_EQ(a.local_part, R"("john doe")");
  EXPECT_EQ(a.str(), R"("john doe"@example.com)");
  EXPECT_EQ(parse_ok(R"(<"a\"b\\c"@example.com>)").local_part, R"("a\"b\\c")");
  EXPECT_EQ(parse_ok(R"(<"a@b>c"@example.com>)").local_part, R"("a@b>c")");
  EXPECT_EQ(parse_ok(R"(<"\ "@example.com>)").local_part, R"("\ ")");
}

TEST(ParsePath, QuotedLocalPartErrors) {
  expect_syntax_error(R"(<""@example.com>)");
  expect_syntax_error(R"(<"abc@example.com>)");
  expect_syntax_error(R"(<"abc"x@example.com>)");
  expect_syntax_error(R"(<x"abc"@example.com>)");
  expect_syntax_error(R"(<"abc\"@example.com>)");
  expect_syntax_error("<\"a\tb\"@example.com>");
  expect_syntax_error("<\"a\\\x01\"@example.com>");
  expect_syntax_error("<\"a\x7f\"@example.com>");
  expect_syntax_error(R"(<"abc">)");
}

TEST(ParsePath, DotStringErrors) {
  for (std::string_view text : {"<.a@example.com>", "<a.@example.com>", "<a..b@example.com>", "<@example.com>",
                                "<a b@example.com>", "<a(b)@example.com>", "<a,b@example.com>", "<a[b@example.com>",
                                "<a\\b@example.com>", "<a:b@example.com>", "<user>", "<user@>", "<a@b@example.com>"}) {
    expect_syntax_error(text);
  }
}

TEST(ParsePath, AngleBracketsRequiredAndNothingAround) {
  for (std::string_view text :
       {"user@example.com", "<user@example.com", "user@example.com>", " <user@example.com>", "<user@example.com> ",
        "<user@example.com>x", "x<user@example.com>", "<<user@example.com>>", "<", ">", "", "<user@example.com>>"}) {
    expect_syntax_error(text, true);
  }
}

TEST(ParsePath, Domains) {
  EXPECT_EQ(parse_ok("<a@x-1.y2.example>").domain, "x-1.y2.example");
  EXPECT_EQ(parse_ok("<a@123.example>").domain, "123.example");
  EXPECT_EQ(parse_ok("<a@1.2.3.4>").domain, "1.2.3.4");
  for (std::string_view text :
       {"<a@-x.example>", "<a@x-.example>", "<a@x..example>", "<a@.example>", "<a@example.>", "<a@example.com.>",
        "<a@ex_ample.com>", "<a@ex ample.com>", "<a@exa$mple.com>", "<a@example.com:25>", "<a@>"}) {
    expect_syntax_error(text);
  }
}

TEST(ParsePath, Ipv4Literals) {
  const Address a = parse_ok("<a@[192.0.2.1]>");
  EXPECT_TRUE(a.domain_literal);
  EXPECT_EQ(a.domain, "[192.0.2.1]");
  EXPECT_EQ(parse_ok("<a@[0.0.0.0]>").domain, "[0.0.0.0]");
  EXPECT_EQ(parse_ok("<a@[255.255.255.255]>").domain, "[255.255.255.255]");
  EXPECT_EQ(parse_ok("<a@[001.02.3.4]>").domain, "[001.02.3.4]");
  for (std::string_view text : {"<a@[256.0.0.1]>", "<a@[1.2.3]>", "<a@[1.2.3.4.5]>", "<a@[1.2.3.]>", "<a@[1..2.3]>",
                                "<a@[1.2.3.0256]>", "<a@[1.2.3.4 ]>", "<a@[ 1.2.3.4]>", "<a@[1.2.3.a]>", "<a@[]>",
                                "<a@[1.2.3.4>", "<a@1.2.3.4]>", "<a@[-1.2.3.4]>", "<a@[1.2.3.999]>"}) {
    expect_syntax_error(text);
  }
}

TEST(ParsePath, Ipv6Literals) {
  for (std::string_view text : {
           "<a@[IPv6:2001:db8:0:0:0:0:0:1]>",  // IPv6-full
           "<a@[IPv6:2001:DB8::1]>",           // IPv6-comp
           "<a@[IPv6:::1]>",
           "<a@[IPv6:::]>",
           "<a@[IPv6:1::]>",
           "<a@[IPv6:1:2:3:4:5:6::]>",  // six groups with "::"
           "<a@[IPv6:1:2:3::4:5:6]>",
           "<a@[IPv6:0:0:0:0:0:ffff:192.0.2.1]>",  // IPv6v4-full
           "<a@[IPv6:::ffff:192.0.2.1]>",          // IPv6v4-comp
           "<a@[IPv6:1:2:3:4::192.0.2.1]>",
           "<a@[IPv6:::192.0.2.1]>",
           "<a@[ipv6:::1]>",
       }) {
    const Address a = parse_ok(text);
    EXPECT_TRUE(a.domain_literal) << text;
    EXPECT_EQ("<a@" + a.domain + ">", text);
  }
  for (std::string_view text : {
           "<a@[IPv6:1:2:3:4:5:6:7]>",      // seven groups, no "::"
           "<a@[IPv6:1:2:3:4:5:6:7:8:9]>",  // nine groups
           "<a@[IPv6:1:2:3:4:5:6:7::]>",    // "::" must stand for two groups or more (RFC 5321)
           "<a@[IPv6:1::2::3]>",            // two "::"
           "<a@[IPv6::::1]>",               // ":::"
           "<a@[IPv6:1:::2]>",
           "<a@[IPv6::1]>",  // single leading colon
           "<a@[IPv6:1:]>",
           "<a@[IPv6:12345::1]>",  // five hex digits
           "<a@[IPv6:g::1]>",
           "<a@[IPv6:1:2:3:4:5::192.0.2.1]>",  // five groups + "::" + IPv4
           "<a@[IPv6:1:2:3:4:5:192.0.2.1]>",   // IPv4 tail needs six groups before it
           "<a@[IPv6:::192.0.2.256]>",
           "<a@[IPv6:192.0.2.1::1]>",  // IPv4 not last
           "<a@[IPv6:]>",
           "<a@[IPv6]>",
           "<a@[IPv6:2001:db8::1%eth0]>",
           "<a@[Tag:text]>",     // General-address-literal: refused
           "<a@[2001:db8::1]>",  // missing tag
       }) {
    expect_syntax_error(text);
  }
}

TEST(ParsePath, SourceRouteIsStripped) {
  const Address a = parse_ok("<@a.example,@b.example:user@c.example>");
  EXPECT_TRUE(a.source_route);
  EXPECT_EQ(a.str(), "user@c.example");
  const Address single = parse_ok("<@relay.example:user@c.example>");
  EXPECT_TRUE(single.source_route);
  EXPECT_EQ(single.str(), "user@c.example");
  for (std::string_view text :
       {"<@a.example:>", "<@:user@c.example>", "<@a.example,b.example:user@c.example>", "<@a.example,:user@c.example>",
        "<@a.example user@c.example>", "<@a.example@b.example:user@c.example>", "<@[1.2.3.4]:user@c.example>",
        "<@-a.example:user@c.example>", "<@a.example>", "<@a.example:@b.example:u@c>"}) {
    expect_syntax_error(text);
  }
}

TEST(ParsePath, LengthLimits) {
  const std::string local64(64, 'l');
  EXPECT_EQ(parse_ok("<" + local64 + "@example.com>").local_part, local64);
  expect_syntax_error("<" + local64 + "l@example.com>");
  // A quoted local part counts its quotes.
  expect_syntax_error("<\"" + std::string(63, 'q') + "\"@example.com>");
  EXPECT_TRUE(parse_ok("<\"" + std::string(62, 'q') + "\"@example.com>").quoted_local);

  // Domain of 253 octets in labels of 63: path = 1 + 1 + 1 + 253 + 1 = 257 > 256.
  const std::string label(63, 'd');
  const std::string domain253 = label + "." + label + "." + label + "." + std::string(61, 'd');
  ASSERT_EQ(domain253.size(), 253u);
  expect_syntax_error("<a@" + domain253 + ">");
  // 252 octets fits the 256-octet path.
  EXPECT_EQ(parse_ok("<a@" + domain253.substr(1) + ">").domain.size(), 252u);
}

TEST(ParsePath, Utf8Addresses) {
  const Address a = parse_ok(
      "<j\xc3\xb6rg@b\xc3\xbc"
      "cher.example>");  // jörg@bücher.example
  EXPECT_TRUE(a.utf8);
  EXPECT_EQ(a.local_part, "j\xc3\xb6rg");
  EXPECT_EQ(a.domain,
            "b\xc3\xbc"
            "cher.example");
  EXPECT_TRUE(parse_ok("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8>").utf8);  // CJK
  EXPECT_TRUE(parse_ok("<\xf0\x9f\x98\x80@example.com>").utf8);  // U+1F600, four octets
  EXPECT_TRUE(parse_ok("<\"\xc3\xa9 x\"@example.com>").utf8);    // in a quoted string
  EXPECT_TRUE(parse_ok("<@r\xc3\xa9lai.example:a@example.com>").utf8);
  EXPECT_FALSE(parse_ok("<ascii@example.com>").utf8);
}

TEST(ParsePath, MalformedUtf8Refused) {
  for (std::string_view text : {
           "<\x80@example.com>",              // lone continuation
           "<a\xc3@example.com>",             // truncated sequence
           "<\xc0\xaf@example.com>",          // overlong "/"
           "<\xc1\xbf@example.com>",          // overlong
           "<\xe0\x80\xaf@example.com>",      // overlong three octets
           "<\xf0\x80\x80\xaf@example.com>",  // overlong four octets
           "<\xed\xa0\x80@example.com>",      // surrogate U+D800
           "<\xed\xbf\xbf@example.com>",      // surrogate U+DFFF
           "<\xf4\x90\x80\x80@example.com>",  // U+110000
           "<\xf5\x80\x80\x80@example.com>", "<\xff@example.com>",
           "<a@b\xc3.example>",  // truncated sequence in a U-label
       }) {
    expect_syntax_error(text);
  }
  // Non-ASCII is not allowed inside address literals.
  expect_syntax_error("<a@[1.2.3.\xc3\xa9]>");
}

TEST(ValidUtf8, Sequences) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("\xc2\x80"));          // U+0080, smallest two-octet
  EXPECT_TRUE(valid_utf8("\xdf\xbf"));          // U+07FF
  EXPECT_TRUE(valid_utf8("\xe0\xa0\x80"));      // U+0800
  EXPECT_TRUE(valid_utf8("\xed\x9f\xbf"));      // U+D7FF, just below the surrogates
  EXPECT_TRUE(valid_utf8("\xee\x80\x80"));      // U+E000, just above
  EXPECT_TRUE(valid_utf8("\xef\xbf\xbf"));      // U+FFFF
  EXPECT_TRUE(valid_utf8("\xf0\x90\x80\x80"));  // U+10000
  EXPECT_TRUE(valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  EXPECT_TRUE(valid_utf8(std::string_view("\0", 1)));
  EXPECT_FALSE(valid_utf8("\x80"));
  EXPECT_FALSE(valid_utf8("\xbf"));
  EXPECT_FALSE(valid_utf8("\xc0\x80"));  // overlong NUL
  EXPECT_FALSE(valid_utf8("\xc2"));
  EXPECT_FALSE(valid_utf8("\xc2\x41"));
  EXPECT_FALSE(valid_utf8("\xe0\x9f\xbf"));          // overlong
  EXPECT_FALSE(valid_utf8("\xe1\x80"));              // truncated
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));          // U+D800
  EXPECT_FALSE(valid_utf8("\xf0\x8f\xbf\xbf"));      // overlong
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));      // > U+10FFFF
  EXPECT_FALSE(valid_utf8("\xf8\x88\x80\x80\x80"));  // five-octet form
  EXPECT_FALSE(valid_utf8("\xfe"));
  EXPECT_FALSE(valid_utf8("ok\xe2\x82"));  // truncated at the end
}

TEST(ParsePath, PathOver256Refused) {
  const std::string local(64, 'l');
  std::string domain;
  while (domain.size() < 200) domain += "abcdefghi.";
  domain += "example";
  const std::string path = "<" + local + "@" + domain + ">";
  ASSERT_GT(path.size(), 256u);
  expect_syntax_error(path);
}

}  // namespace
}  // namespace tern::smtp
