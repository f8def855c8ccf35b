#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "mta/pop3/pop3_command.h"

namespace tern::pop3 {
namespace {

TEST(Pop3Command, KeywordsAreCaseInsensitive) {
  EXPECT_EQ(parse_command("STAT").verb, Verb::stat);
  EXPECT_EQ(parse_command("stat").verb, Verb::stat);
  EXPECT_EQ(parse_command("StAt").verb, Verb::stat);
  EXPECT_EQ(parse_command("top 1 2").verb, Verb::top);
  const struct {
    const char* line;
    Verb verb;
  } cases[] = {{"USER a", Verb::user}, {"PASS a", Verb::pass}, {"LIST", Verb::list}, {"RETR 1", Verb::retr},
               {"DELE 1", Verb::dele}, {"RSET", Verb::rset},   {"UIDL", Verb::uidl}, {"NOOP", Verb::noop},
               {"QUIT", Verb::quit},   {"CAPA", Verb::capa},   {"STLS", Verb::stls}, {"AUTH PLAIN", Verb::auth}};
  for (const auto& c : cases) {
    const Command cmd = parse_command(c.line);
    EXPECT_EQ(cmd.verb, c.verb) << c.line;
    EXPECT_TRUE(cmd.error.empty()) << c.line;
  }
}

TEST(Pop3Command, UnknownKeywords) {
  for (const char* line :
       {"", " ", "ST", "STATS", "XYZ", "APOP a b", "LAST", "S1AT", " STAT", "STAT\t", "\xff\xfe\xfd"})
    EXPECT_EQ(parse_command(line).verb, Verb::unknown) << line;
}

TEST(Pop3Command, Arguments) {
  Command c = parse_command("TOP 12 0");
  ASSERT_TRUE(c.error.empty());
  ASSERT_EQ(c.args.size(), 2u);
  EXPECT_EQ(c.args[0], "12");
  EXPECT_EQ(c.args[1], "0");

  c = parse_command("LIST");
  EXPECT_TRUE(c.error.empty());
  EXPECT_TRUE(c.args.empty());
  c = parse_command("LIST 3");
  EXPECT_TRUE(c.error.empty());
  EXPECT_EQ(c.args.size(), 1u);
}

TEST(Pop3Command, ArgumentSyntaxErrors) {
  for (const char* line :
       {"STAT 1",         "LIST 1 2", "RETR",    "RETR 1 2", "TOP 1",    "TOP 1 2 3", "DELE", "USER",
        "USER a b",       "LIST ",    "RETR  1", "TOP 1  2", "TOP 1 2 ", "QUIT now",  "PASS", "PASS ",
        "AUTH PLAIN x y", "NOOP x",   "CAPA x",  "STLS x",   "RSET x",   "UIDL 1 2"}) {
    const Command c = parse_command(line);
    EXPECT_NE(c.verb, Verb::unknown) << line;
    EXPECT_FALSE(c.error.empty()) << line;
    EXPECT_TRUE(c.args.empty()) << line;
  }
}

TEST(Pop3Command, ArgumentsAtMost40Octets) {
  const std::string forty(40, 'a');
  Command c = parse_command("USER " + forty);
  EXPECT_TRUE(c.error.empty());
  EXPECT_EQ(c.args.at(0), forty);
  c = parse_command("USER " + forty + "a");
  EXPECT_FALSE(c.error.empty());
}

TEST(Pop3Command, PassTakesTheRestOfTheLine) {
  const Command c = parse_command("PASS  my secret  pass phrase that is longer than forty octets ");
  ASSERT_TRUE(c.error.empty());
  ASSERT_EQ(c.args.size(), 1u);
  EXPECT_EQ(c.args[0], " my secret  pass phrase that is longer than forty octets ");
}

TEST(Pop3Command, AuthInitialResponseMayBeLong) {
  const std::string ir(200, 'A');
  Command c = parse_command("AUTH PLAIN " + ir);
  ASSERT_TRUE(c.error.empty());
  ASSERT_EQ(c.args.size(), 2u);
  EXPECT_EQ(c.args[1], ir);
  c = parse_command("AUTH");
  EXPECT_TRUE(c.error.empty());
  EXPECT_TRUE(c.args.empty());
  c = parse_command("auth plain =");
  EXPECT_EQ(c.args.at(1), "=");
  // The mechanism itself is an ordinary argument.
  EXPECT_FALSE(parse_command("AUTH " + std::string(41, 'P')).error.empty());
}

TEST(Pop3Command, VerbNames) {
  EXPECT_EQ(verb_name(Verb::top), "TOP");
  EXPECT_EQ(verb_name(Verb::uidl), "UIDL");
  EXPECT_EQ(verb_name(Verb::unknown), "unknown");
}

TEST(Pop3Command, MessageNumbers) {
  EXPECT_EQ(parse_message_number("1", 5), 1u);
  EXPECT_EQ(parse_message_number("5", 5), 5u);
  EXPECT_EQ(parse_message_number("05", 5), 5u);
  for (const char* bad : {"", "0", "6", "+1", "-1", " 1", "1 ", "1a", "0x1", "1.0", "99999999999999999999999"})
    EXPECT_FALSE(parse_message_number(bad, 5).has_value()) << bad;
  EXPECT_FALSE(parse_message_number("1", 0).has_value());
  EXPECT_EQ(parse_message_number("18446744073709551615", std::numeric_limits<size_t>::max()),
            std::numeric_limits<size_t>::max());
  EXPECT_FALSE(parse_message_number("18446744073709551616", std::numeric_limits<size_t>::max()).has_value());
}

TEST(Pop3Command, LineCounts) {
  EXPECT_EQ(parse_line_count("0"), 0u);
  EXPECT_EQ(parse_line_count("10"), 10u);
  EXPECT_EQ(parse_line_count("99999999999999999999999"), std::numeric_limits<size_t>::max());
  for (const char* bad : {"", "-1", "+1", "1x", " 0"}) EXPECT_FALSE(parse_line_count(bad).has_value()) << bad;
}

}  // namespace
}  // namespace tern::pop3
