#include <gtest/gtest.h>

#include <string>

#include "mta/smtp/sasl.h"

using tern::smtp::base64_decode;
using tern::smtp::base64_encode;
using tern::smtp::parse_sasl_plain;

namespace {

using namespace std::string_literals;

// RFC 4648 §10.
struct Vector {
  const char* plain;
  const char* encoded;
};
constexpr Vector kRfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

TEST(Base64, Rfc4648VectorsEncode) {
  for (const auto& v : kRfc4648) EXPECT_EQ(base64_encode(v.plain), v.encoded) << v.plain;
}

TEST(Base64, Rfc4648VectorsDecode) {
  for (const auto& v : kRfc4648) {
    auto d = base64_decode(v.encoded);
    ASSERT_TRUE(d.has_value()) << v.encoded;
    EXPECT_EQ(*d, v.plain);
  }
}

TEST(Base64, AllByteValuesRoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n <= all.size(); n += 1) {
    const std::string s = all.substr(0, n);
    auto d = base64_decode(base64_encode(s));
    ASSERT_TRUE(d.has_value()) << n;
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(base64_encode("\xff\xfe\xfd"s), "//79");
  EXPECT_EQ(base64_encode("\xfb\xff"s), "+/8=");
}

TEST(Base64, RejectsMissingPaddingAndBadLength) {
  EXPECT_FALSE(base64_decode("Zg"));
  EXPECT_FALSE(base64_decode("Zg="));
  EXPECT_FALSE(base64_decode("Zm8"));
  EXPECT_FALSE(base64_decode("Z"));
  EXPECT_FALSE(base64_decode("Zm9vY"));
  EXPECT_FALSE(base64_decode("Zm9vYg="));
}

TEST(Base64, RejectsWhitespace) {
  EXPECT_FALSE(base64_decode("Zm9v Zm9v"));
  EXPECT_FALSE(base64_decode("Zm9v\r\n"));
  EXPECT_FALSE(base64_decode(" Zm9"));
  EXPECT_FALSE(base64_decode("Zm9v\tZm8="));
}

TEST(Base64, RejectsBadCharacters) {
  EXPECT_FALSE(base64_decode("Zm9-"));  // base64url
  EXPECT_FALSE(base64_decode("Zm9_"));
  EXPECT_FALSE(base64_decode("Zm9*"));
  EXPECT_FALSE(base64_decode("Zm\x00v"s));
  EXPECT_FALSE(base64_decode("Zm\x80v"s));
}

TEST(Base64, RejectsMisplacedPadding) {
  EXPECT_FALSE(base64_decode("===="));
  EXPECT_FALSE(base64_decode("Z==="));
  EXPECT_FALSE(base64_decode("Zg==Zm9v"));  // padding before the end
  EXPECT_FALSE(base64_decode("Zm=v"));
  EXPECT_FALSE(base64_decode("Zm9v===="));
  EXPECT_FALSE(base64_decode("=m9v"));
}

TEST(Base64, RejectsNonCanonicalTrailingBits) {
  EXPECT_FALSE(base64_decode("Zh=="));  // 'h' leaves bits set after "f"
  EXPECT_FALSE(base64_decode("Zm9="));
  EXPECT_TRUE(base64_decode("Zm8="));
}

TEST(SaslPlain, Rfc4616Examples) {
  auto p = parse_sasl_plain("\0tim\0tanstaaftanstaaf"s);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->authzid, "");
  EXPECT_EQ(p->authcid, "tim");
  EXPECT_EQ(p->password, "tanstaaftanstaaf");

  p = parse_sasl_plain("Ursel\0Kurt\0xipj3plmq"s);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->authzid, "Ursel");
  EXPECT_EQ(p->authcid, "Kurt");
  EXPECT_EQ(p->password, "xipj3plmq");
}

TEST(SaslPlain, ThroughBase64) {
  auto d = base64_decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
  ASSERT_TRUE(d);
  auto p = parse_sasl_plain(*d);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->authcid, "tim");
  EXPECT_EQ(p->password, "tanstaaftanstaaf");
}

TEST(SaslPlain, NulCount) {
  EXPECT_FALSE(parse_sasl_plain(""));
  EXPECT_FALSE(parse_sasl_plain("timpassword"));
  EXPECT_FALSE(parse_sasl_plain("tim\0password"s));
  EXPECT_FALSE(parse_sasl_plain("\0tim\0pass\0word"s));
  EXPECT_FALSE(parse_sasl_plain("\0tim\0password\0"s));
  EXPECT_FALSE(parse_sasl_plain("\0\0\0"s));
}

TEST(SaslPlain, EmptyFields) {
  EXPECT_FALSE(parse_sasl_plain("\0\0password"s));
  EXPECT_FALSE(parse_sasl_plain("\0tim\0"s));
  EXPECT_FALSE(parse_sasl_plain("\0\0"s));
  EXPECT_TRUE(parse_sasl_plain("\0t\0p"s));
}

TEST(SaslPlain, Lengths) {
  const std::string max(255, 'a');
  const std::string over(256, 'a');
  EXPECT_TRUE(parse_sasl_plain(max + '\0' + max + '\0' + max));
  EXPECT_FALSE(parse_sasl_plain(over + '\0' + "tim" + '\0' + "pw"));
  EXPECT_FALSE(parse_sasl_plain("\0"s + over + '\0' + "pw"));
  EXPECT_FALSE(parse_sasl_plain("\0tim\0"s + over));
}

TEST(SaslPlain, Utf8) {
  auto p = parse_sasl_plain("\0j\xc3\xb6rg\0p\xc3\xa4ss"s);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->authcid, "j\xc3\xb6rg");
  EXPECT_FALSE(parse_sasl_plain("\0j\xc3rg\0pass"s));      // truncated sequence
  EXPECT_FALSE(parse_sasl_plain("\0tim\0\xc0\xafpass"s));  // overlong
  EXPECT_FALSE(parse_sasl_plain("\xff\0tim\0pass"s));      // bad authzid
  EXPECT_FALSE(parse_sasl_plain("\0tim\0\xed\xa0\x80"s));  // surrogate
}

}  // namespace
