#include <gtest/gtest.h>

#include <string>

#include "mta/smtp/params.h"

namespace tern::smtp {
namespace {

// tern::queue::NotifyFlags values (queue/envelope.h).
constexpr uint8_t never = 1, success = 2, failure = 4, delay = 8;

MailArgument mail_ok(std::string_view arg) {
  auto result = parse_mail_argument(arg);
  EXPECT_TRUE(std::holds_alternative<MailArgument>(result))
      << arg << ": " << (std::holds_alternative<Reply>(result) ? std::get<Reply>(result).text : "");
  return std::holds_alternative<MailArgument>(result) ? std::get<MailArgument>(result) : MailArgument{};
}

RcptArgument rcpt_ok(std::string_view arg, bool smtputf8 = false) {
  auto result = parse_rcpt_argument(arg, smtputf8);
  EXPECT_TRUE(std::holds_alternative<RcptArgument>(result))
      << arg << ": " << (std::holds_alternative<Reply>(result) ? std::get<Reply>(result).text : "");
  return std::holds_alternative<RcptArgument>(result) ? std::get<RcptArgument>(result) : RcptArgument{};
}

void expect_mail_error(std::string_view arg, int code, std::string_view enhanced) {
  auto result = parse_mail_argument(arg);
  ASSERT_TRUE(std::holds_alternative<Reply>(result)) << arg;
  EXPECT_EQ(std::get<Reply>(result).code, code) << arg;
  EXPECT_EQ(std::get<Reply>(result).enhanced, enhanced) << arg;
}

void expect_rcpt_error(std::string_view arg, int code, std::string_view enhanced, bool smtputf8 = false) {
  auto result = parse_rcpt_argument(arg, smtputf8);
  ASSERT_TRUE(std::holds_alternative<Reply>(result)) << arg;
  EXPECT_EQ(std::get<Reply>(result).code, code) << arg;
  EXPECT_EQ(std::get<Reply>(result).enhanced, enhanced) << arg;
}

TEST(MailArgument, PlainSender) {
  const MailArgument m = mail_ok("FROM:<alice@example.com>");
  EXPECT_EQ(m.sender.str(), "alice@example.com");
  EXPECT_FALSE(m.has_size);
  EXPECT_TRUE(m.body.empty());
  EXPECT_FALSE(m.smtputf8);
  EXPECT_TRUE(m.ret.empty());
  EXPECT_TRUE(m.envid.empty());
}

TEST(MailArgument, PrefixIsCaseInsensitiveAndSpaceTolerated) {
  EXPECT_EQ(mail_ok("from:<a@b.example>").sender.str(), "a@b.example");
  EXPECT_EQ(mail_ok("From: <a@b.example>").sender.str(), "a@b.example");
  EXPECT_TRUE(mail_ok("FROM:<>").sender.null());
  EXPECT_TRUE(mail_ok("FROM:<> ").sender.null());
}

TEST(MailArgument, MissingFromIsSyntaxError) {
  for (std::string_view arg : {"", "<a@b.example>", "FROM<a@b.example>", "FRM:<a@b.example>", "TO:<a@b.example>",
                               " FROM:<a@b.example>", "FROM"}) {
    expect_mail_error(arg, 501, "5.5.4");
  }
}

TEST(MailArgument, BadSenderGets517) {
  for (std::string_view arg : {"FROM:", "FROM:a@b.example", "FROM:<a@b.example", "FROM:<a@b.example>x",
                               "FROM:<a@b..example>", "FROM:<a@b.example>SIZE=1", "FROM:<<a@b.example>>",
                               "FROM:<\"unterminated@b.example>", "FROM:<a\xc3@b.example> SMTPUTF8"}) {
    expect_mail_error(arg, 501, "5.1.7");
  }
}

TEST(MailArgument, QuotedLocalPartWithSpaceAndBracket) {
  const MailArgument m = mail_ok(R"(FROM:<"a >b"@example.com> SIZE=5)");
  EXPECT_EQ(m.sender.local_part, R"("a >b")");
  EXPECT_TRUE(m.has_size);
  EXPECT_EQ(m.size, 5u);
}

TEST(MailArgument, AllParameters) {
  const MailArgument m = mail_ok("FROM:<a@b.example> SIZE=12345 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2B314+3D");
  EXPECT_TRUE(m.has_size);
  EXPECT_EQ(m.size, 12345u);
  EXPECT_EQ(m.body, "8BITMIME");
  EXPECT_TRUE(m.smtputf8);
  EXPECT_EQ(m.ret, "HDRS");
  EXPECT_EQ(m.envid, "QQ+314=");
}

TEST(MailArgument, KeywordsCaseInsensitiveAndMultipleSpaces) {
  const MailArgument m = mail_ok("FROM:<a@b.example>   size=0  Body=7Bit  ret=Full  smtputf8  ");
  EXPECT_TRUE(m.has_size);
  EXPECT_EQ(m.size, 0u);
  EXPECT_EQ(m.body, "7BIT");
  EXPECT_EQ(m.ret, "FULL");
  EXPECT_TRUE(m.smtputf8);
}

TEST(MailArgument, SizeValues) {
  EXPECT_EQ(mail_ok("FROM:<> SIZE=18446744073709551615").size, 18446744073709551615u);
  for (std::string_view arg :
       {"FROM:<> SIZE", "FROM:<> SIZE=", "FROM:<> SIZE=-1", "FROM:<> SIZE=+1", "FROM:<> SIZE=1k", "FROM:<> SIZE=0x10",
        "FROM:<> SIZE=18446744073709551616", "FROM:<> SIZE=1 SIZE=1", "FROM:<> SIZE=1 size=2"}) {
    expect_mail_error(arg, 501, "5.5.4");
  }
}

TEST(MailArgument, BodyValues) {
  for (std::string_view arg : {"FROM:<> BODY=BINARYMIME", "FROM:<> BODY=8BIT", "FROM:<> BODY",
                               "FROM:<> BODY=", "FROM:<> BODY=7BIT BODY=7BIT", "FROM:<> BODY=7BIT BODY=8BITMIME"}) {
    expect_mail_error(arg, 501, "5.5.4");
  }
}

TEST(MailArgument, RetValues) {
  for (std::string_view arg : {"FROM:<> RET=PARTIAL", "FROM:<> RET", "FROM:<> RET=", "FROM:<> RET=FULL RET=FULL",
                               "FROM:<> RET=FULL RET=HDRS"}) {
    expect_mail_error(arg, 501, "5.5.4");
  }
}

TEST(MailArgument, Smtputf8TakesNoValueAndOnlyOnce) {
  expect_mail_error("FROM:<> SMTPUTF8=yes", 501, "5.5.4");
  expect_mail_error("FROM:<> SMTPUTF8 SMTPUTF8", 501, "5.5.4");
}

TEST(MailArgument, EnvidValues) {
  EXPECT_EQ(mail_ok("FROM:<> ENVID=" + std::string(100, 'e')).envid, std::string(100, 'e'));
  EXPECT_EQ(mail_ok("FROM:<> ENVID=a+20b").envid, "a b");
  for (const std::string& arg :
       {std::string("FROM:<> ENVID=") + std::string(101, 'e'), std::string("FROM:<> ENVID=ab+2"),
        std::string("FROM:<> ENVID=ab+2b"), std::string("FROM:<> ENVID=ab+ZZ"), std::string("FROM:<> ENVID="),
        std::string("FROM:<> ENVID"), std::string("FROM:<> ENVID=a ENVID=b"),
        std::string("FROM:<> ENVID=a+0D+0Ab"),  // CRLF would reach DSN headers
        std::string("FROM:<> ENVID=a+00"), std::string("FROM:<> ENVID=a+C3+A9")}) {
    expect_mail_error(arg, 501, "5.5.4");
  }
}

TEST(MailArgument, ParameterSyntax) {
  for (std::string_view arg :
       {"FROM:<> =1", "FROM:<> -SIZE=1", "FROM:<> SI_ZE=1", "FROM:<> SIZE==1", "FROM:<> ENVID=a=b", "FROM:<> SIZE=1\t",
        "FROM:<> X=\xc3\xa9", "FROM:<> ENVID=a\x7f", "FROM:<>\tSIZE=1"}) {
    auto result = parse_mail_argument(arg);
    ASSERT_TRUE(std::holds_alternative<Reply>(result)) << arg;
    EXPECT_EQ(std::get<Reply>(result).code, 501) << arg;
  }
}

TEST(MailArgument, UnknownParameterGets555) {
  expect_mail_error("FROM:<a@b.example> FOO=bar", 555, "5.5.4");
  expect_mail_error("FROM:<a@b.example> X-TERN", 555, "5.5.4");
  expect_mail_error("FROM:<a@b.example> NOTIFY=NEVER", 555, "5.5.4");
  expect_mail_error("FROM:<a@b.example> AUTH=<>", 555, "5.5.4");
}

TEST(MailArgument, NonAsciiSenderNeedsSmtputf8) {
  expect_mail_error("FROM:<j\xc3\xb6rg@example.com>", 553, "5.6.7");
  const MailArgument m = mail_ok("FROM:<j\xc3\xb6rg@example.com> SMTPUTF8");
  EXPECT_TRUE(m.sender.utf8);
  EXPECT_TRUE(m.smtputf8);
}

TEST(RcptArgument, PlainRecipient) {
  const RcptArgument r = rcpt_ok("TO:<bob@example.com>");
  EXPECT_EQ(r.recipient.str(), "bob@example.com");
  EXPECT_EQ(r.notify, 0);
  EXPECT_TRUE(r.orcpt.empty());
  EXPECT_EQ(rcpt_ok("to: <bob@example.com>").recipient.str(), "bob@example.com");
  EXPECT_EQ(rcpt_ok("TO:<Postmaster>").recipient.str(), "Postmaster");
  EXPECT_EQ(rcpt_ok("TO:<@relay.example:bob@example.com>").recipient.str(), "bob@example.com");
}

TEST(RcptArgument, NullAndBadRecipientsGet513) {
  for (std::string_view arg : {"TO:<>", "TO:bob@example.com", "TO:<bob@>", "TO:<bob@example.com>x", "TO:"}) {
    expect_rcpt_error(arg, 501, "5.1.3");
  }
  for (std::string_view arg : {"", "<bob@example.com>", "FROM:<bob@example.com>", "T0:<bob@example.com>"}) {
    expect_rcpt_error(arg, 501, "5.5.4");
  }
}

TEST(RcptArgument, NotifyValues) {
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=NEVER").notify, never);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=never").notify, never);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=SUCCESS").notify, success);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=FAILURE,DELAY").notify, failure | delay);
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> NOTIFY=delay,Success,FAILURE").notify, success | failure | delay);
}

TEST(RcptArgument, NotifyErrors) {
  for (std::string_view arg :
       {"TO:<b@x.example> NOTIFY=NEVER,SUCCESS", "TO:<b@x.example> NOTIFY=SUCCESS,NEVER",
        "TO:<b@x.example> NOTIFY=NEVER,NEVER", "TO:<b@x.example> NOTIFY=DELAY,DELAY",
        "TO:<b@x.example> NOTIFY=SUCCESS,", "TO:<b@x.example> NOTIFY=,SUCCESS",
        "TO:<b@x.example> NOTIFY=SUCCESS,,DELAY", "TO:<b@x.example> NOTIFY=", "TO:<b@x.example> NOTIFY",
        "TO:<b@x.example> NOTIFY=ALWAYS", "TO:<b@x.example> NOTIFY=SUCCESS NOTIFY=DELAY"}) {
    expect_rcpt_error(arg, 501, "5.5.4");
  }
}

TEST(RcptArgument, OrcptValues) {
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> ORCPT=rfc822;b@x.example").orcpt, "rfc822;b@x.example");
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> ORCPT=RFC822;b+2Bx@x.example").orcpt, "RFC822;b+x@x.example");
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> ORCPT=utf-8;b@x.example").orcpt, "utf-8;b@x.example");
  const RcptArgument both = rcpt_ok("TO:<b@x.example> NOTIFY=FAILURE ORCPT=rfc822;b@x.example");
  EXPECT_EQ(both.notify, failure);
  EXPECT_EQ(both.orcpt, "rfc822;b@x.example");
  const std::string long_orcpt = "rfc822;" + std::string(493, 'a');
  ASSERT_EQ(long_orcpt.size(), 500u);  // RFC 3461 §4.2 allows 500 characters
  EXPECT_EQ(rcpt_ok("TO:<b@x.example> ORCPT=" + long_orcpt).orcpt, long_orcpt);
}

TEST(RcptArgument, OrcptErrors) {
  for (const std::string& arg : {
           std::string("TO:<b@x.example> ORCPT=rfc822"),               // no ';'
           std::string("TO:<b@x.example> ORCPT=;b@x.example"),         // empty addr-type
           std::string("TO:<b@x.example> ORCPT=rfc822;"),              // empty address
           std::string("TO:<b@x.example> ORCPT=rfc.822;b@x.example"),  // addr-type not an atom
           std::string("TO:<b@x.example> ORCPT=rfc822;b+zz@x.example"),
           std::string("TO:<b@x.example> ORCPT=rfc822;b+0Ax@x.example"), std::string("TO:<b@x.example> ORCPT"),
           std::string("TO:<b@x.example> ORCPT=rfc822;a ORCPT=rfc822;b"),
           std::string("TO:<b@x.example> ORCPT=rfc822;") + std::string(494, 'a'),  // 501 characters
       }) {
    expect_rcpt_error(arg, 501, "5.5.4");
  }
}

TEST(RcptArgument, UnknownParameterGets555) {
  expect_rcpt_error("TO:<b@x.example> SIZE=10", 555, "5.5.4");
  expect_rcpt_error("TO:<b@x.example> FOO", 555, "5.5.4");
}

TEST(RcptArgument, NonAsciiRecipientNeedsSmtputf8Transaction) {
  expect_rcpt_error("TO:<\xc3\xa9@example.com>", 553, "5.6.7", false);
  EXPECT_TRUE(rcpt_ok("TO:<\xc3\xa9@example.com>", true).recipient.utf8);
  // Syntax errors come before the SMTPUTF8 check.
  expect_rcpt_error("TO:<\xc3\xa9@example.com> NOTIFY=BAD", 501, "5.5.4", false);
}

TEST(XtextDecode, Decodes) {
  std::string out = "stale";
  EXPECT_TRUE(xtext_decode("", out));
  EXPECT_EQ(out, "");
  EXPECT_TRUE(xtext_decode("abc", out));
  EXPECT_EQ(out, "abc");
  EXPECT_TRUE(xtext_decode("+2B+3D+20+7E+00", out));
  EXPECT_EQ(out, std::string("+= ~\0", 5));
  EXPECT_TRUE(xtext_decode("!~", out));
  EXPECT_EQ(out, "!~");
  EXPECT_TRUE(xtext_decode("+FF", out));
  EXPECT_EQ(out, "\xff");
}

TEST(XtextDecode, Rejects) {
  for (std::string_view in :
       {"+", "+2", "a+", "+2b", "+ab", "+G0", "+-1", "a=b", "a b", "a\tb", "\x7f", "\xc3\xa9", "++20"}) {
    std::string out;
    EXPECT_FALSE(xtext_decode(in, out)) << in;
    EXPECT_TRUE(out.empty()) << in;
  }
  std::string out;
  EXPECT_FALSE(xtext_decode(std::string_view("a\0b", 3), out));
}

TEST(ParameterText, IsWhatFollowsThePathAsSent) {
  EXPECT_EQ(parameter_text("FROM:<a@b.test> SIZE=10  BODY=8BITMIME "), "SIZE=10  BODY=8BITMIME");
  EXPECT_EQ(parameter_text("TO: <\"x y\"@b.test> NOTIFY=NEVER"), "NOTIFY=NEVER");
  EXPECT_EQ(parameter_text("FROM:<>"), "");
  EXPECT_EQ(parameter_text("no colon"), "");
}

}  // namespace
}  // namespace tern::smtp
