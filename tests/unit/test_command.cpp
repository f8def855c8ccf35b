#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "mta/smtp/command.h"

namespace tern::smtp {
namespace {

TEST(ParseCommand, RecognisesEveryVerbInAnyCase) {
  const std::vector<std::pair<std::string, Verb>> cases = {
      {"EHLO", Verb::ehlo},         {"helo", Verb::helo}, {"Mail", Verb::mail}, {"rCpT", Verb::rcpt},
      {"DATA", Verb::data},         {"bdat", Verb::bdat}, {"RSET", Verb::rset}, {"noop", Verb::noop},
      {"QUIT", Verb::quit},         {"help", Verb::help}, {"VRFY", Verb::vrfy}, {"expn", Verb::expn},
      {"StartTLS", Verb::starttls}, {"auth", Verb::auth}, {"ETRN", Verb::etrn}, {"saml", Verb::saml},
      {"SEND", Verb::send},         {"soml", Verb::soml}, {"TURN", Verb::turn},
  };
  for (const auto& [word, verb] : cases) {
    EXPECT_EQ(parse_command(word).verb, verb) << word;
    EXPECT_EQ(parse_command(word + " x").verb, verb) << word;
  }
}

TEST(ParseCommand, MailKeepsFromInArgument) {
  const Command c = parse_command("MAIL FROM:<a@b.example> SIZE=10");
  EXPECT_EQ(c.verb, Verb::mail);
  EXPECT_EQ(c.argument, "FROM:<a@b.example> SIZE=10");
}

TEST(ParseCommand, RcptKeepsToInArgument) {
  const Command c = parse_command("rcpt TO:<x@y>");
  EXPECT_EQ(c.verb, Verb::rcpt);
  EXPECT_EQ(c.argument, "TO:<x@y>");
}

TEST(ParseCommand, NoArgumentGivesEmptyArgument) {
  const Command c = parse_command("MAIL");
  EXPECT_EQ(c.verb, Verb::mail);
  EXPECT_TRUE(c.argument.empty());
}

TEST(ParseCommand, ArgumentOnVerbWithoutOneIsStillReturned) {
  const Command c = parse_command("DATA now");
  EXPECT_EQ(c.verb, Verb::data);
  EXPECT_EQ(c.argument, "now");
}

TEST(ParseCommand, OnlyOneSpaceIsRemovedAndTrailingSpacesKept) {
  const Command c = parse_command("NOOP  x  ");
  EXPECT_EQ(c.verb, Verb::noop);
  EXPECT_EQ(c.argument, " x  ");
  const Command bare = parse_command("QUIT ");
  EXPECT_EQ(bare.verb, Verb::quit);
  EXPECT_EQ(bare.argument, "");
}

TEST(ParseCommand, VerbMustEndAtSpaceOrEnd) {
  EXPECT_EQ(parse_command("DATAX").verb, Verb::unknown);
  EXPECT_EQ(parse_command("DATA\t").verb, Verb::unknown);
  EXPECT_EQ(parse_command("MAIL:FROM:<a@b>").verb, Verb::unknown);
  EXPECT_EQ(parse_command("QUI").verb, Verb::unknown);
  EXPECT_EQ(parse_command("STARTTLSX").verb, Verb::unknown);
}

TEST(ParseCommand, UnknownAndDegenerateLines) {
  EXPECT_EQ(parse_command("").verb, Verb::unknown);
  EXPECT_EQ(parse_command(" ").verb, Verb::unknown);
  EXPECT_EQ(parse_command(" DATA").verb, Verb::unknown);
  EXPECT_EQ(parse_command("GET / HTTP/1.1").verb, Verb::unknown);
  EXPECT_EQ(parse_command(std::string("DA\0TA", 5)).verb, Verb::unknown);
  EXPECT_EQ(parse_command("D\xc3\xa1TA").verb, Verb::unknown);
}

BdatArgument bdat_ok(std::string_view arg) {
  auto result = parse_bdat_argument(arg);
  EXPECT_TRUE(std::holds_alternative<BdatArgument>(result)) << arg;
  return std::holds_alternative<BdatArgument>(result) ? std::get<BdatArgument>(result) : BdatArgument{};
}

void expect_bdat_error(std::string_view arg) {
  auto result = parse_bdat_argument(arg);
  ASSERT_TRUE(std::holds_alternative<Reply>(result)) << arg;
  EXPECT_EQ(std::get<Reply>(result).code, 501) << arg;
  EXPECT_EQ(std::get<Reply>(result).enhanced, "5.5.4") << arg;
}

TEST(ParseBdat, SizeAndLast) {
  EXPECT_EQ(bdat_ok("0").size, 0u);
  EXPECT_FALSE(bdat_ok("0").last);
  EXPECT_EQ(bdat_ok("1000").size, 1000u);
  EXPECT_TRUE(bdat_ok("1000 LAST").last);
  EXPECT_TRUE(bdat_ok("7 last").last);
  EXPECT_TRUE(bdat_ok("7 LaSt").last);
  EXPECT_EQ(bdat_ok("007").size, 7u);
  EXPECT_EQ(bdat_ok("18446744073709551615").size, 18446744073709551615u);
}

TEST(ParseBdat, Malformed) {
  for (std::string_view arg :
       {"", " ", "LAST", " 10", "10 ", "10  LAST", "10 LAST ", "10 LASTX", "10 FIRST", "-1", "+1", "0x10", "1e3", "12a",
        "10\tLAST", "18446744073709551616", "99999999999999999999999", "10 LAST LAST"}) {
    expect_bdat_error(arg);
  }
}

void expect_helo_ok(std::string_view arg) {
  auto result = parse_helo_argument(arg);
  ASSERT_TRUE(std::holds_alternative<std::string_view>(result)) << arg;
  EXPECT_EQ(std::get<std::string_view>(result), arg);
}

void expect_helo_error(std::string_view arg) {
  auto result = parse_helo_argument(arg);
  ASSERT_TRUE(std::holds_alternative<Reply>(result)) << arg;
  EXPECT_EQ(std::get<Reply>(result).code, 501) << arg;
  EXPECT_EQ(std::get<Reply>(result).enhanced, "5.5.4") << arg;
}

TEST(ParseHelo, Domains) {
  expect_helo_ok("localhost");
  expect_helo_ok("mail.example.com");
  expect_helo_ok("mail.example.com.");
  expect_helo_ok("a-b.c0.example");
  expect_helo_ok("123.example");
  expect_helo_ok(
      "b\xc3\xbc"
      "cher.example");
}

TEST(ParseHelo, AddressLiterals) {
  expect_helo_ok("[192.0.2.1]");
  expect_helo_ok("[IPv6:::1]");
  expect_helo_ok("[IPv6:2001:db8::1]");
  expect_helo_ok("[ipv6:2001:db8:0:0:0:0:0:1]");
  expect_helo_ok("[IPv6:::ffff:192.0.2.1]");
}

TEST(ParseHelo, Malformed) {
  for (std::string_view arg : {"",
                               " ",
                               "example.com ",
                               " example.com",
                               "exa mple.com",
                               "-example.com",
                               "example-.com",
                               "example..com",
                               ".example.com",
                               "example.com..",
                               ".",
                               "ex_ample.com",
                               "[192.0.2.1",
                               "192.0.2.1]",
                               "[256.0.0.1]",
                               "[IPv6:1::2::3]",
                               "[Tag:stuff]",
                               "[]",
                               "a@b.example",
                               "b\xc3.example",
                               "\xed\xa0\x80.example",
                               "\xc0\xae.example"}) {
    expect_helo_error(arg);
  }
  expect_helo_error(std::string(256, 'a'));
}

}  // namespace
}  // namespace tern::smtp
