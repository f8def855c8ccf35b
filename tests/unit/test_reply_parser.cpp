#include <gtest/gtest.h>

#include "mta/smtp/reply_parser.h"

namespace tern::smtp {
namespace {

using State = ReplyParser::State;

TEST(ReplyParser, SingleLine) {
  ReplyParser p;
  EXPECT_EQ(p.feed("250 2.1.0 Ok"), State::complete);
  EXPECT_EQ(p.reply().code, 250);
  EXPECT_EQ(p.reply().enhanced, "2.1.0");
  EXPECT_EQ(p.reply().text, "2.1.0 Ok");
  EXPECT_EQ(p.reply().klass(), 2);
  EXPECT_TRUE(p.reply().positive());
}

TEST(ReplyParser, CodeAloneAndNoEnhancedCode) {
  ReplyParser p;
  EXPECT_EQ(p.feed("354"), State::complete);
  EXPECT_EQ(p.reply().code, 354);
  EXPECT_EQ(p.reply().enhanced, "");
  EXPECT_EQ(p.reply().text, "");
  EXPECT_EQ(p.feed("220 mx.example ESMTP ready"), State::complete);
  EXPECT_EQ(p.reply().code, 220);
  EXPECT_EQ(p.reply().enhanced, "");
  EXPECT_EQ(p.reply().text, "mx.example ESMTP ready");
}

TEST(ReplyParser, MultiLine) {
  ReplyParser p;
  EXPECT_EQ(p.feed("250-mx.example Hello"), State::need_more);
  EXPECT_EQ(p.feed("250-PIPELINING"), State::need_more);
  EXPECT_EQ(p.feed("250-SIZE 10240000"), State::need_more);
  EXPECT_EQ(p.feed("250 CHUNKING"), State::complete);
  EXPECT_EQ(p.reply().code, 250);
  auto lines = p.reply().lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "mx.example Hello");
  EXPECT_EQ(lines[3], "CHUNKING");
  // The next feed starts a new reply.
  EXPECT_EQ(p.feed("550 5.1.1 No such user"), State::complete);
  EXPECT_EQ(p.reply().code, 550);
  EXPECT_EQ(p.reply().enhanced, "5.1.1");
  EXPECT_EQ(p.reply().lines().size(), 1u);
  EXPECT_FALSE(p.reply().positive());
}

TEST(ReplyParser, Malformed) {
  for (const char* bad : {"", "25", "2x0 Ok", "abc", "250xOk", "199 too low", "600 too high", "25 0"}) {
    ReplyParser p;
    EXPECT_EQ(p.feed(bad), State::malformed) << bad;
  }
  ReplyParser p;
  EXPECT_EQ(p.feed("250-first"), State::need_more);
  EXPECT_EQ(p.feed("251 different code"), State::malformed);
  // Recovers with the next reply.
  EXPECT_EQ(p.feed("250 ok"), State::complete);
  EXPECT_EQ(p.reply().code, 250);
  EXPECT_EQ(p.reply().text, "ok");
}

TEST(ReplyParser, EnhancedCodes) {
  EXPECT_EQ(parse_enhanced_code("2.0.0 Ok").value_or(""), "2.0.0");
  EXPECT_EQ(parse_enhanced_code("4.7.321").value_or(""), "4.7.321");
  EXPECT_EQ(parse_enhanced_code("5.10.100 text").value_or(""), "5.10.100");
  EXPECT_FALSE(parse_enhanced_code("3.0.0 no class 3"));
  EXPECT_FALSE(parse_enhanced_code("2.0 short"));
  EXPECT_FALSE(parse_enhanced_code("2.0.0000 too long"));
  EXPECT_FALSE(parse_enhanced_code("2.0.0x"));
  EXPECT_FALSE(parse_enhanced_code("Ok"));
}

TEST(ReplyParser, EhloKeywords) {
  ReplyParser p;
  for (const char* l : {"250-mx.example greets you", "250-pipelining", "250-SIZE 35882577", "250-8BITMIME",
                        "250-AUTH PLAIN login", "250-AUTH=CRAM-MD5", "250-STARTTLS", "250-ENHANCEDSTATUSCODES",
                        "250-SMTPUTF8"})
    ASSERT_EQ(p.feed(l), State::need_more);
  ASSERT_EQ(p.feed("250 CHUNKING"), State::complete);
  EhloInfo info = parse_ehlo(p.reply());
  EXPECT_TRUE(info.pipelining);
  EXPECT_TRUE(info.chunking);
  EXPECT_TRUE(info.starttls);
  EXPECT_TRUE(info.eight_bit_mime);
  EXPECT_TRUE(info.enhanced_status_codes);
  EXPECT_TRUE(info.smtputf8);
  EXPECT_EQ(info.size, 35882577u);
  EXPECT_TRUE(info.has_auth("PLAIN"));
  EXPECT_TRUE(info.has_auth("login"));
  EXPECT_TRUE(info.has_auth("CRAM-MD5"));
  EXPECT_FALSE(info.has_auth("XOAUTH2"));
  EXPECT_TRUE(info.has("Pipelining"));
  EXPECT_FALSE(info.has("DSN"));
  // The greeting line is not a keyword.
  EXPECT_FALSE(info.has("MX.EXAMPLE"));

  ASSERT_EQ(p.feed("250 mx.example only a greeting"), State::complete);
  EhloInfo bare = parse_ehlo(p.reply());
  EXPECT_FALSE(bare.pipelining);
  EXPECT_FALSE(bare.chunking);
  EXPECT_TRUE(bare.keywords.empty());
}

}  // namespace
}  // namespace tern::smtp
