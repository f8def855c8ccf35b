#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mta/dsn/dsn_builder.h"
#include "mta/smtp/params.h"
#include "mta/smtp/received.h"
#include "mta/text.h"
#include "tests/unit/dsn_report_reader.h"

namespace tern::dsn {
namespace {

using namespace report_reader;

// ---------------------------------------------------------------------------
// A small, strict parser for what the builder produces.

constexpr int64_t kArrival = 1'700'000'000'000'000;   // Tue, 14 Nov 2023 22:13:20 +0000
constexpr int64_t kNow = kArrival + 3'600'000'000LL;  // one hour later
constexpr int64_t kLastAttempt = kArrival + 60'000'000LL;
constexpr int64_t kRetryUntil = kArrival + 5 * 86'400'000'000LL;

const std::string kHeaders =
    "Received: from client.example.org by mx.example.net; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: Bob <bob@example.com>\r\n"
    "Subject: hello\r\n"
    "Message-ID: <orig@example.org>\r\n"
    "\r\n";
const std::string kBody = "Hello Bob.\r\nThis is the body.\r\n";
const std::string kContent = kHeaders + kBody;

RecipientReport failed_recipient(std::string address = "bob@example.com") {
  RecipientReport r;
  r.final_recipient = std::move(address);
  r.action = Action::failed;
  r.status = "5.1.1";
  r.remote_mta = "mx.example.com";
  r.diagnostic = "550 5.1.1 <bob@example.com>: no such user";
  r.last_attempt_us = kLastAttempt;
  return r;
}

Report base_report() {
  Report r;
  r.reporting_mta = "mx.example.net";
  r.to = "alice@example.org";
  r.original_sender = "alice@example.org";
  r.queue_id = "Q123ABC";
  r.original_message_id = "<orig@example.org>";
  r.arrival_us = kArrival;
  r.now_us = kNow;
  r.message_id = "<N1@mx.example.net>";
  r.recipients = {failed_recipient()};
  r.returned = Returned::full;
  r.max_returned_size = 0;
  r.content = kContent;
  return r;
}

struct Built {
  BuiltReport built;
  Message msg;
};

Built build_and_parse(const Report& r) {
  Built b;
  b.built = build_report(r);
  check_lines(b.built.content);
  b.msg = parse_message(b.built.content);
  return b;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Top-level headers

// rfc5322_date() keeps the last second it formatted: a new second, earlier
// or later, is formatted again.
TEST(Rfc5322Date, FormatsEachSecond) {
  EXPECT_EQ(smtp::rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(smtp::rfc5322_date(999'999), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(smtp::rfc5322_date(1'000'000), "Thu, 01 Jan 1970 00:00:01 +0000");
  EXPECT_EQ(smtp::rfc5322_date(-1'000'000), "Wed, 31 Dec 1969 23:59:59 +0000");
  EXPECT_EQ(smtp::rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
}

TEST(DsnBuilder, TopLevelHeaders) {
  const Built b = build_and_parse(base_report());
  const auto& h = b.msg.headers;
  EXPECT_EQ(get(h, "Date"), "Tue, 14 Nov 2023 23:13:20 +0000");
  EXPECT_EQ(get(h, "Date"), smtp::rfc5322_date(kNow));
  ASSERT_TRUE(get(h, "From"));
  EXPECT_NE(get(h, "From")->find("<MAILER-DAEMON@mx.example.net>"), std::string::npos) << *get(h, "From");
  EXPECT_EQ(get(h, "To"), "<alice@example.org>");
  EXPECT_EQ(get(h, "Subject"), "Undelivered Mail Returned to Sender");
  EXPECT_EQ(get(h, "Message-ID"), "<N1@mx.example.net>");
  EXPECT_EQ(get(h, "In-Reply-To"), "<orig@example.org>");
  EXPECT_EQ(get(h, "References"), "<orig@example.org>");
  EXPECT_EQ(get(h, "Auto-Submitted"), "auto-replied");
  EXPECT_EQ(get(h, "MIME-Version"), "1.0");
  ASSERT_TRUE(get(h, "Content-Type"));
  EXPECT_TRUE(get(h, "Content-Type")->starts_with("multipart/report; report-type=delivery-status; boundary=\""))
      << *get(h, "Content-Type");
  EXPECT_TRUE(get(h, "Content-Type")->ends_with("\""));
  for (std::string_view name :
       {"Date", "From", "To", "Subject", "Message-ID", "Auto-Submitted", "MIME-Version", "Content-Type"})
    EXPECT_EQ(count(h, name), 1u) << name;
  // The header section is ASCII and the report is 7-bit here.
  EXPECT_TRUE(is_ascii(b.built.content));
  EXPECT_FALSE(b.built.eight_bit);
  EXPECT_FALSE(b.built.smtputf8);
  EXPECT_EQ(b.built.returned, Returned::full);
}

TEST(DsnBuilder, NoInReplyToWithoutOriginalMessageId) {
  Report r = base_report();
  r.original_message_id.clear();
  const Built b = build_and_parse(r);
  EXPECT_FALSE(get(b.msg.headers, "In-Reply-To"));
  EXPECT_FALSE(get(b.msg.headers, "References"));
}

TEST(DsnBuilder, OriginalMessageIdWithLineBreakIsLeftOut) {
  Report r = base_report();
  r.original_message_id = "<a@b>\r\nX-Evil: 1";
  const Built b = build_and_parse(r);
  EXPECT_FALSE(get(b.msg.headers, "In-Reply-To"));
  EXPECT_FALSE(get(b.msg.headers, "X-Evil"));
}

TEST(DsnBuilder, SubjectPerActionAndAudience) {
  struct Case {
    Action action;
    Audience audience;
    std::string subject;
  };
  const Case cases[] = {
      {Action::failed, Audience::sender, "Undelivered Mail Returned to Sender"},
      {Action::failed, Audience::postmaster_copy, "Postmaster Copy: Undelivered Mail"},
      {Action::failed, Audience::double_bounce, "Postmaster Notice: Undelivered Mail from <>"},
      {Action::delayed, Audience::sender, "Delayed Mail (still being retried)"},
      {Action::delivered, Audience::sender, "Successful Mail Delivery Report"},
      {Action::relayed, Audience::sender, "Successful Mail Delivery Report"},
  };
  for (const Case& c : cases) {
    Report r = base_report();
    r.recipients[0].action = c.action;
    r.audience = c.audience;
    const Built b = build_and_parse(r);
    EXPECT_EQ(get(b.msg.headers, "Subject"), c.subject) << action_name(c.action) << " " << audience_name(c.audience);
  }
}

TEST(DsnBuilder, Names) {
  EXPECT_EQ(action_name(Action::failed), "failed");
  EXPECT_EQ(action_name(Action::delayed), "delayed");
  EXPECT_EQ(action_name(Action::delivered), "delivered");
  EXPECT_EQ(action_name(Action::relayed), "relayed");
  EXPECT_EQ(audience_name(Audience::sender), "sender");
  EXPECT_EQ(audience_name(Audience::postmaster_copy), "postmaster_copy");
  EXPECT_EQ(audience_name(Audience::double_bounce), "double_bounce");
}

// ---------------------------------------------------------------------------
// MIME structure and what is returned

TEST(DsnBuilder, FailureWithFullReturnHasThreeParts) {
  const Built b = build_and_parse(base_report());
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_TRUE(part_type(b.msg.parts[0]).starts_with("text/plain")) << part_type(b.msg.parts[0]);
  EXPECT_EQ(part_type(b.msg.parts[1]), "message/delivery-status");
  EXPECT_EQ(part_type(b.msg.parts[2]), "message/rfc822");
  EXPECT_EQ(b.msg.parts[2].body, kContent);
  EXPECT_EQ(get(b.msg.parts[2].headers, "Content-Transfer-Encoding"), "7bit");
  EXPECT_EQ(b.built.returned, Returned::full);
  // The human text names the recipient and the remote reply.
  const std::string& text = b.msg.parts[0].body;
  EXPECT_NE(text.find("<bob@example.com>"), std::string::npos) << text;
  // Lines are wrapped at 76 columns, continuations indented by four spaces.
  std::string unwrapped;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 6, "\r\n    ") == 0) {
      unwrapped += ' ';
      i += 5;
    } else {
      unwrapped += text[i];
    }
  }
  EXPECT_NE(unwrapped.find("550 5.1.1 <bob@example.com>: no such user"), std::string::npos) << text;
  for (size_t start = 0, end; (end = text.find("\r\n", start)) != std::string::npos; start = end + 2)
    EXPECT_LE(end - start, 76u) << text.substr(start, end - start);
  EXPECT_NE(text.find("mx.example.com"), std::string::npos) << text;
  EXPECT_NE(text.find("attached"), std::string::npos);
}

TEST(DsnBuilder, ReturnedHeadersOnly) {
  Report r = base_report();
  r.returned = Returned::headers;
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(part_type(b.msg.parts[2]), "text/rfc822-headers");
  EXPECT_EQ(b.msg.parts[2].body, kHeaders);
  EXPECT_EQ(b.msg.parts[2].body.find("Hello Bob"), std::string::npos);
  EXPECT_EQ(b.built.content.find("This is the body."), std::string::npos);
  EXPECT_EQ(b.built.returned, Returned::headers);
}

TEST(DsnBuilder, ReturnedNothingHasTwoParts) {
  Report r = base_report();
  r.returned = Returned::nothing;
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 2u);
  EXPECT_TRUE(part_type(b.msg.parts[0]).starts_with("text/plain"));
  EXPECT_EQ(part_type(b.msg.parts[1]), "message/delivery-status");
  EXPECT_EQ(b.built.content.find("Subject: hello"), std::string::npos);
  EXPECT_EQ(b.built.returned, Returned::nothing);
}

TEST(DsnBuilder, ContentOverMaxSizeReturnsHeadersAndSaysSo) {
  Report r = base_report();
  const std::string big = kHeaders + std::string(2000, 'x') + "\r\n";
  r.content = big;
  r.max_returned_size = 1000;
  ASSERT_LT(kHeaders.size(), 1000u);
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(part_type(b.msg.parts[2]), "text/rfc822-headers");
  EXPECT_EQ(b.msg.parts[2].body, kHeaders);
  EXPECT_EQ(b.built.returned, Returned::headers);
  EXPECT_NE(b.msg.parts[0].body.find("1000 bytes"), std::string::npos) << b.msg.parts[0].body;
}

TEST(DsnBuilder, ContentAtMaxSizeIsReturnedWhole) {
  Report r = base_report();
  r.max_returned_size = kContent.size();
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(part_type(b.msg.parts[2]), "message/rfc822");
  EXPECT_EQ(b.built.returned, Returned::full);
}

TEST(DsnBuilder, HeadersOverMaxSizeReturnNothing) {
  Report r = base_report();
  r.max_returned_size = 20;
  const Built b = build_and_parse(r);
  EXPECT_EQ(b.msg.parts.size(), 2u);
  EXPECT_EQ(b.built.returned, Returned::nothing);
  EXPECT_EQ(b.built.content.find("Subject: hello"), std::string::npos);

  r.returned = Returned::headers;  // RET=HDRS with headers too large
  const Built h = build_and_parse(r);
  EXPECT_EQ(h.msg.parts.size(), 2u);
  EXPECT_EQ(h.built.returned, Returned::nothing);
}

TEST(DsnBuilder, BinaryIsReturnedAsHeaders) {
  Report r = base_report();
  r.binary = true;
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(part_type(b.msg.parts[2]), "text/rfc822-headers");
  EXPECT_EQ(b.msg.parts[2].body, kHeaders);
  EXPECT_EQ(b.built.returned, Returned::headers);
  EXPECT_EQ(b.msg.parts[0].body.find("bytes)"), std::string::npos);  // not a size matter
}

TEST(DsnBuilder, EmptyContentReturnsNothing) {
  for (Returned ret : {Returned::full, Returned::headers}) {
    Report r = base_report();
    r.content = "";
    r.returned = ret;
    const Built b = build_and_parse(r);
    EXPECT_EQ(b.msg.parts.size(), 2u);
    EXPECT_EQ(b.built.returned, Returned::nothing);
  }
}

TEST(DsnBuilder, ContentWithoutFinalCrlfStillEndsTheLineBeforeTheBoundary) {
  Report r = base_report();
  const std::string content = kHeaders + "no final line end";
  r.content = content;
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(b.msg.parts[2].body, content + "\r\n");
}

// ---------------------------------------------------------------------------
// The RFC 3464 status part

TEST(DsnBuilder, StatusPartGrammarAndFields) {
  Report r = base_report();
  r.envid = "ENV-42";
  RecipientReport second = failed_recipient("carol@example.com");
  second.original_recipient = "rfc822;Carol@Example.COM";
  second.remote_mta.clear();
  second.diagnostic.clear();
  second.reason = "DNS: example.com has no mail servers";
  second.status = "5.4.4";
  second.last_attempt_us = 0;
  second.will_retry_until_us = kRetryUntil;  // not for a failure
  r.recipients.push_back(second);
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  const Part& part = b.msg.parts[1];
  EXPECT_EQ(part_type(part), "message/delivery-status");
  EXPECT_FALSE(get(part.headers, "Content-Transfer-Encoding").has_value());
  const auto groups = status_groups(part.body);
  ASSERT_EQ(groups.size(), 3u);

  const auto& msg = groups[0];
  EXPECT_EQ(get(msg, "Reporting-MTA"), "dns; mx.example.net");
  EXPECT_EQ(get(msg, "X-Tern-Queue-ID"), "Q123ABC");
  EXPECT_EQ(get(msg, "Original-Envelope-Id"), "ENV-42");
  EXPECT_EQ(get(msg, "Arrival-Date"), smtp::rfc5322_date(kArrival));
  EXPECT_EQ(get(msg, "Arrival-Date"), "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_FALSE(get(msg, "Final-Recipient"));
  EXPECT_EQ(groups[0].front().name, "Reporting-MTA");

  const auto& bob = groups[1];
  EXPECT_EQ(get(bob, "Final-Recipient"), "rfc822; bob@example.com");
  EXPECT_FALSE(get(bob, "Original-Recipient"));
  EXPECT_EQ(get(bob, "Action"), "failed");
  EXPECT_EQ(get(bob, "Status"), "5.1.1");
  EXPECT_EQ(get(bob, "Remote-MTA"), "dns; mx.example.com");
  EXPECT_EQ(get(bob, "Diagnostic-Code"), "smtp; 550 5.1.1 <bob@example.com>: no such user");
  EXPECT_EQ(get(bob, "Last-Attempt-Date"), smtp::rfc5322_date(kLastAttempt));
  EXPECT_FALSE(get(bob, "Will-Retry-Until"));

  const auto& carol = groups[2];
  EXPECT_EQ(get(carol, "Final-Recipient"), "rfc822; carol@example.com");
  EXPECT_EQ(get(carol, "Original-Recipient"), "rfc822; Carol@Example.COM");
  EXPECT_EQ(get(carol, "Action"), "failed");
  EXPECT_EQ(get(carol, "Status"), "5.4.4");
  EXPECT_FALSE(get(carol, "Remote-MTA"));
  EXPECT_EQ(get(carol, "Diagnostic-Code"), "X-Tern; DNS: example.com has no mail servers");
  EXPECT_FALSE(get(carol, "Last-Attempt-Date"));
  EXPECT_FALSE(get(carol, "Will-Retry-Until"));

  // Each recipient group starts with Final-Recipient (and has each field once).
  for (size_t i = 1; i < groups.size(); ++i) {
    EXPECT_EQ(groups[i].front().name, "Final-Recipient");
    for (std::string_view name : {"Final-Recipient", "Action", "Status"}) EXPECT_EQ(count(groups[i], name), 1u);
  }
  // The human part mentions the reason given without a remote reply.
  EXPECT_NE(b.msg.parts[0].body.find("DNS: example.com has no mail servers"), std::string::npos);
}

TEST(DsnBuilder, NoEnvelopeIdWhenAbsentAndNoDiagnosticWhenNone) {
  Report r = base_report();
  r.envid.clear();
  r.arrival_us = 0;
  r.recipients[0].diagnostic.clear();
  r.recipients[0].reason.clear();
  r.recipients[0].remote_mta.clear();
  const Built b = build_and_parse(r);
  ASSERT_GE(b.msg.parts.size(), 2u);
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_FALSE(get(groups[0], "Original-Envelope-Id"));
  EXPECT_FALSE(get(groups[0], "Arrival-Date"));
  EXPECT_FALSE(get(groups[1], "Diagnostic-Code"));
  EXPECT_FALSE(get(groups[1], "Remote-MTA"));
  // The status code stands in for a reason in the human part.
  EXPECT_NE(b.msg.parts[0].body.find("<bob@example.com>: 5.1.1"), std::string::npos) << b.msg.parts[0].body;
}

TEST(DsnBuilder, DiagnosticWinsOverReason) {
  Report r = base_report();
  r.recipients[0].reason = "our own words";
  const Built b = build_and_parse(r);
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(get(groups[1], "Diagnostic-Code"), "smtp; 550 5.1.1 <bob@example.com>: no such user");
  EXPECT_EQ(count(groups[1], "Diagnostic-Code"), 1u);
}

TEST(DsnBuilder, OriginalRecipientTypes) {
  struct Case {
    std::string orcpt;
    std::string expected;
  };
  const Case cases[] = {
      {"rfc822;x@y", "rfc822; x@y"}, {"utf-8;x@y", "utf-8; x@y"}, {"x@y", "rfc822; x@y"},  // without a type
  };
  for (const Case& c : cases) {
    Report r = base_report();
    r.recipients[0].original_recipient = c.orcpt;
    const Built b = build_and_parse(r);
    const auto groups = status_groups(b.msg.parts[1].body);
    ASSERT_EQ(groups.size(), 2u);
    EXPECT_EQ(get(groups[1], "Original-Recipient"), c.expected) << c.orcpt;
  }
}

TEST(DsnBuilder, ActionsAndWillRetryUntil) {
  for (Action a : {Action::failed, Action::delayed, Action::delivered, Action::relayed}) {
    Report r = base_report();
    r.recipients[0].action = a;
    r.recipients[0].will_retry_until_us = kRetryUntil;
    if (a == Action::delivered || a == Action::relayed) {
      r.recipients[0].status = "2.0.0";
      r.recipients[0].diagnostic.clear();
    }
    const Built b = build_and_parse(r);
    const auto groups = status_groups(b.msg.parts[1].body);
    ASSERT_EQ(groups.size(), 2u);
    EXPECT_EQ(get(groups[1], "Action"), std::string(action_name(a)));
    if (a == Action::delayed) {
      EXPECT_EQ(get(groups[1], "Will-Retry-Until"), smtp::rfc5322_date(kRetryUntil));
      EXPECT_NE(b.msg.parts[0].body.find(smtp::rfc5322_date(kRetryUntil)), std::string::npos);
    } else {
      EXPECT_FALSE(get(groups[1], "Will-Retry-Until")) << action_name(a);
    }
  }
}

TEST(DsnBuilder, RelayedRecipientLineNamesTheNextHop) {
  Report r = base_report();
  r.recipients[0].action = Action::relayed;
  r.recipients[0].status = "2.0.0";
  r.returned = Returned::headers;
  const Built b = build_and_parse(r);
  const std::string& text = b.msg.parts[0].body;
  EXPECT_NE(text.find("<bob@example.com>: passed on to mx.example.com"), std::string::npos) << text;
}

TEST(DsnBuilder, LineBreaksInValuesAreXtextEncoded) {
  Report r = base_report();
  const std::string evil = "\r\nX-Evil: 1";
  r.envid = concat({"env", evil});
  r.recipients[0].diagnostic = concat({"550 no such user", evil});
  r.recipients[0].original_recipient = concat({"rfc822;x@y", evil});
  r.recipients[0].status = concat({"5.1.1", evil});
  r.recipients[0].remote_mta = concat({"mx.example.com", evil});
  RecipientReport second = failed_recipient(concat({"carol@example.com", evil}));
  second.diagnostic.clear();
  second.reason = concat({"expired", evil, "\n\rX-Evil: 2\x7f"});
  r.recipients.push_back(second);
  r.to = concat({"alice@example.org", evil});
  r.original_sender = concat({"alice@example.org", evil});
  const Built b = build_and_parse(r);
  for (const std::string& line : split_lines(b.built.content)) {
    EXPECT_FALSE(line.starts_with("X-Evil")) << line;
    EXPECT_EQ(line.find('\x7f'), std::string::npos);
  }
  ASSERT_EQ(b.msg.parts.size(), 3u);
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(get(groups[0], "Original-Envelope-Id"), smtp::xtext_encode(r.envid));
  EXPECT_EQ(get(groups[1], "Diagnostic-Code"), concat({"smtp; ", smtp::xtext_encode(r.recipients[0].diagnostic)}));
  EXPECT_EQ(get(groups[1], "Original-Recipient"), concat({"rfc822; ", smtp::xtext_encode(concat({"x@y", evil}))}));
  EXPECT_EQ(get(groups[2], "Final-Recipient"), concat({"rfc822; ", smtp::xtext_encode(second.final_recipient)}));
  EXPECT_EQ(get(groups[2], "Diagnostic-Code"), concat({"X-Tern; ", smtp::xtext_encode(second.reason)}));
  EXPECT_NE(get(groups[1], "Diagnostic-Code")->find("+0D+0AX-Evil:+201"), std::string::npos);
  for (const auto& g : groups) EXPECT_FALSE(get(g, "X-Evil"));
  EXPECT_FALSE(get(b.msg.headers, "X-Evil"));
}

// A reply that is not UTF-8, and one longer than any mail line may be
// (replies are bounded, but the report must not depend on it): the human
// text stays valid UTF-8 and every line within 998 octets.
TEST(DsnBuilder, HumanTextOfABrokenReplyStaysValidMail) {
  Report r = base_report();
  r.smtputf8 = true;
  r.recipients[0].diagnostic = "550 5.1.1 caf\xe9 \xff\xfe " + std::string(2000, 'x');
  const BuiltReport built = build_report(r);
  check_lines(built.content);
  const Message m = parse_message(built.content);
  ASSERT_GE(m.parts.size(), 2u);
  const std::string& text = m.parts[0].body;
  EXPECT_EQ(text.find('\xff'), std::string::npos);
  EXPECT_NE(text.find("550 5.1.1 caf? ??"), std::string::npos) << text.substr(0, 800);
  // The status part: not UTF-8, so xtext even in a global report.
  EXPECT_NE(m.parts[1].body.find("caf+E9"), std::string::npos);
}

TEST(DsnBuilder, LongDiagnosticIsFoldedAndUnfoldsToTheValue) {
  std::string diag = "550 5.7.1";
  while (diag.size() < 300) diag += " policy";
  diag.resize(300);
  ASSERT_NE(diag.back(), ' ');
  Report r = base_report();
  r.recipients[0].diagnostic = diag;
  const BuiltReport built = build_report(r);
  check_lines(built.content);
  const Message m = parse_message(built.content);
  ASSERT_EQ(m.parts.size(), 3u);
  const std::string& status = m.parts[1].body;
  // Every line of the status part fits in 78 characters.
  for (const std::string& line : split_lines(status)) EXPECT_LE(line.size(), 78u) << line;
  // The field spans several lines.
  const size_t at = status.find("Diagnostic-Code: ");
  ASSERT_NE(at, std::string::npos);
  const size_t end = status.find("\r\nLast-Attempt-Date:", at);
  ASSERT_NE(end, std::string::npos);
  const std::string raw = status.substr(at, end - at);
  EXPECT_GE(std::count(raw.begin(), raw.end(), '\n'), 3);
  // RFC 5322 §2.2.3 unfolding (removing CRLF only) gives back the value.
  EXPECT_EQ(unfold(raw), concat({"Diagnostic-Code: smtp; ", diag}));
  const auto groups = status_groups(status);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(get(groups[1], "Diagnostic-Code"), concat({"smtp; ", diag}));
}

TEST(DsnBuilder, TopLevelHeaderLinesWithin78) {
  const BuiltReport built = build_report(base_report());
  const std::string_view headers = header_section(built.content);
  for (const std::string& line : split_lines(headers)) EXPECT_LE(line.size(), 78u) << line;
  // Unfolding the Content-Type line gives back the whole value.
  const Message m = parse_message(built.content);
  EXPECT_EQ(get(m.headers, "Content-Type"),
            concat({"multipart/report; report-type=delivery-status; boundary=\"", m.boundary, "\""}));
}

TEST(DsnBuilder, LongWordWithoutSpacesStaysWithin998) {
  Report r = base_report();
  r.recipients[0].diagnostic = concat({"550 ", std::string(900, 'z')});
  const Built b = build_and_parse(r);  // check_lines asserts 998
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(get(groups[1], "Diagnostic-Code"), concat({"smtp; ", r.recipients[0].diagnostic}));
}

TEST(DsnBuilder, LongNonAsciiReplyInAsciiReportStaysWithin998) {
  // A 510-octet reply in Japanese (within RFC 5321's 512-octet reply line)
  // becomes xtext without a single space in an ASCII-only report.
  std::string diag = "550 ";
  while (diag.size() + 3 <= 510) diag += "\xe5\x8f\x97";  // 受
  Report r = base_report();
  r.recipients[0].diagnostic = diag;
  const Built b = build_and_parse(r);  // check_lines asserts 998
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_TRUE(is_ascii(b.msg.parts[1].body));
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  const auto value = get(groups[1], "Diagnostic-Code");
  ASSERT_TRUE(value);
  EXPECT_TRUE(value->starts_with("smtp; 550"));
  EXPECT_NE(value->find("+E5+8F+97"), std::string::npos);
  // Broken only where it had to be: without the inserted whitespace it is the xtext.
  std::string compact;
  for (char c : *value)
    if (c != ' ' && c != '\t') compact += c;
  EXPECT_EQ(compact, concat({"smtp;", smtp::xtext_encode(diag)}));
}

// ---------------------------------------------------------------------------
// UTF-8

const std::string kUtf8Address = "j\xc3\xb6s\xc3\xa9@\xe4\xbe\x8b\xe3\x81\x88.test";  // jösé@例え.test

TEST(DsnBuilder, GlobalReportForSmtpUtf8) {
  Report r = base_report();
  r.smtputf8 = true;
  r.recipients[0].final_recipient = kUtf8Address;
  r.to = kUtf8Address;
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(part_type(b.msg.parts[1]), "message/global-delivery-status");
  EXPECT_EQ(get(b.msg.parts[1].headers, "Content-Transfer-Encoding"), "8bit");
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(get(groups[1], "Final-Recipient"), concat({"utf-8; ", kUtf8Address}));
  EXPECT_EQ(part_type(b.msg.parts[2]), "message/global");
  EXPECT_EQ(b.msg.parts[2].body, kContent);
  EXPECT_EQ(get(b.msg.headers, "To"), concat({"<", kUtf8Address, ">"}));
  EXPECT_TRUE(b.built.eight_bit);
  EXPECT_TRUE(b.built.smtputf8);
}

TEST(DsnBuilder, GlobalReportHeadersPart) {
  Report r = base_report();
  r.smtputf8 = true;
  r.returned = Returned::headers;
  r.recipients[0].final_recipient = kUtf8Address;
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(part_type(b.msg.parts[2]), "message/global-headers");
  EXPECT_TRUE(b.built.eight_bit);
}

TEST(DsnBuilder, AsciiRecipientInGlobalReportIsRfc822) {
  Report r = base_report();
  r.smtputf8 = true;
  const Built b = build_and_parse(r);
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(get(groups[1], "Final-Recipient"), "rfc822; bob@example.com");
  EXPECT_EQ(part_type(b.msg.parts[1]), "message/global-delivery-status");
  EXPECT_FALSE(b.built.smtputf8);  // nothing in its header section needs it
}

TEST(DsnBuilder, Utf8AddressWithoutSmtpUtf8IsXtextEncoded) {
  Report r = base_report();
  r.smtputf8 = false;
  r.recipients[0].final_recipient = kUtf8Address;
  r.recipients[0].original_recipient = concat({"rfc822;", kUtf8Address});
  r.recipients[0].diagnostic = concat({"550 5.1.1 <", kUtf8Address, ">: no such user"});
  r.to = kUtf8Address;
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(part_type(b.msg.parts[1]), "message/delivery-status");
  EXPECT_EQ(part_type(b.msg.parts[2]), "message/rfc822");
  EXPECT_TRUE(is_ascii(b.msg.parts[1].body)) << b.msg.parts[1].body;
  EXPECT_TRUE(is_ascii(b.msg.parts[1].raw_headers));
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(get(groups[1], "Final-Recipient"), concat({"rfc822; ", smtp::xtext_encode(kUtf8Address)}));
  EXPECT_EQ(get(groups[1], "Original-Recipient"), concat({"rfc822; ", smtp::xtext_encode(kUtf8Address)}));
  EXPECT_EQ(get(groups[1], "Diagnostic-Code"), concat({"smtp; ", smtp::xtext_encode(r.recipients[0].diagnostic)}));
  // The header section stays ASCII without SMTPUTF8.
  EXPECT_TRUE(is_ascii(b.msg.raw_headers)) << b.msg.raw_headers;
  EXPECT_FALSE(b.built.smtputf8);
}

TEST(DsnBuilder, EightBitReturnedContentInNonUtf8Report) {
  Report r = base_report();
  const std::string content = kHeaders + "Caf\xe9 au lait\r\n";
  r.content = content;
  const Built b = build_and_parse(r);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_EQ(part_type(b.msg.parts[2]), "message/rfc822");
  EXPECT_EQ(get(b.msg.parts[2].headers, "Content-Transfer-Encoding"), "8bit");
  EXPECT_EQ(b.msg.parts[2].body, content);
  EXPECT_TRUE(b.built.eight_bit);
  EXPECT_FALSE(b.built.smtputf8);
  // The other parts stay 7-bit.
  EXPECT_EQ(get(b.msg.parts[0].headers, "Content-Transfer-Encoding"), "7bit");
  EXPECT_FALSE(get(b.msg.parts[1].headers, "Content-Transfer-Encoding"));

  // Returned as headers only: the 8-bit body is not there, all 7-bit.
  r.returned = Returned::headers;
  const Built h = build_and_parse(r);
  EXPECT_FALSE(h.built.eight_bit);
  EXPECT_EQ(get(h.msg.parts[2].headers, "Content-Transfer-Encoding"), "7bit");
}

TEST(DsnBuilder, SevenBitReportIsAll7bit) {
  const Built b = build_and_parse(base_report());
  ASSERT_EQ(b.msg.parts.size(), 3u);
  EXPECT_FALSE(b.built.eight_bit);
  EXPECT_EQ(get(b.msg.parts[0].headers, "Content-Type"), "text/plain; charset=us-ascii");
  EXPECT_EQ(get(b.msg.parts[0].headers, "Content-Transfer-Encoding"), "7bit");
  const auto status_cte = get(b.msg.parts[1].headers, "Content-Transfer-Encoding");
  EXPECT_TRUE(!status_cte || *status_cte == "7bit");
  EXPECT_EQ(get(b.msg.parts[2].headers, "Content-Transfer-Encoding"), "7bit");
  EXPECT_TRUE(is_ascii(b.built.content));
}

// ---------------------------------------------------------------------------
// Boundary

TEST(DsnBuilder, BoundaryAvoidsTheContent) {
  Report r = base_report();
  const Built first = build_and_parse(r);
  const std::string b1 = first.msg.boundary;
  ASSERT_FALSE(b1.empty());
  EXPECT_EQ(kContent.find(b1), std::string::npos);

  const std::string content = concat({kHeaders, "before\r\n--", b1, "\r\ninside\r\n--", b1, "--\r\nafter\r\n"});
  r.content = content;
  const Built second = build_and_parse(r);
  const std::string b2 = second.msg.boundary;
  ASSERT_FALSE(b2.empty());
  EXPECT_NE(b2, b1);
  EXPECT_EQ(content.find(b2), std::string::npos);
  ASSERT_EQ(second.msg.parts.size(), 3u);
  EXPECT_EQ(second.msg.parts[2].body, content);

  // Also when the next candidate is in the content as well.
  const std::string content3 = concat({content, "--", b2, "\r\n"});
  r.content = content3;
  const Built third = build_and_parse(r);
  EXPECT_NE(third.msg.boundary, b1);
  EXPECT_NE(third.msg.boundary, b2);
  EXPECT_EQ(content3.find(third.msg.boundary), std::string::npos);
  ASSERT_EQ(third.msg.parts.size(), 3u);
  EXPECT_EQ(third.msg.parts[2].body, content3);
}

TEST(DsnBuilder, BoundaryAvoidsTheDiagnostic) {
  Report r = base_report();
  const std::string b1 = build_and_parse(r).msg.boundary;
  r.recipients[0].diagnostic = concat({"550 --", b1});
  const Built b = build_and_parse(r);
  EXPECT_NE(b.msg.boundary, b1);
  ASSERT_EQ(b.msg.parts.size(), 3u);
  const auto groups = status_groups(b.msg.parts[1].body);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(get(groups[1], "Diagnostic-Code"), concat({"smtp; 550 --", b1}));
}

// ---------------------------------------------------------------------------
// Audience

TEST(DsnBuilder, AudienceChangesSubjectAndText) {
  Report r = base_report();
  const Built sender = build_and_parse(r);
  r.audience = Audience::postmaster_copy;
  r.to = "postmaster@mx.example.net";
  const Built copy = build_and_parse(r);
  r.audience = Audience::double_bounce;
  r.original_sender.clear();
  const Built dbl = build_and_parse(r);

  EXPECT_NE(get(copy.msg.headers, "Subject")->find("Postmaster Copy"), std::string::npos);
  EXPECT_NE(get(dbl.msg.headers, "Subject")->find("Postmaster Notice"), std::string::npos);
  EXPECT_EQ(get(sender.msg.headers, "Subject")->find("Postmaster"), std::string::npos);
  EXPECT_EQ(get(copy.msg.headers, "To"), "<postmaster@mx.example.net>");

  const std::string& ts = sender.msg.parts[0].body;
  const std::string& tc = copy.msg.parts[0].body;
  const std::string& td = dbl.msg.parts[0].body;
  EXPECT_NE(ts, tc);
  EXPECT_NE(ts, td);
  EXPECT_NE(tc, td);
  EXPECT_NE(tc.find("copy of a delivery failure report sent to <alice@example.org>"), std::string::npos) << tc;
  EXPECT_NE(tc.find("Q123ABC"), std::string::npos);
  EXPECT_NE(td.find("null sender <>"), std::string::npos) << td;
  EXPECT_NE(td.find("Q123ABC"), std::string::npos);
  EXPECT_EQ(ts.find("for the postmaster"), std::string::npos);
  EXPECT_EQ(ts.find("null sender"), std::string::npos);
  // Still three parts with the status part for each.
  for (const Built* b : {&sender, &copy, &dbl}) {
    ASSERT_EQ(b->msg.parts.size(), 3u);
    EXPECT_EQ(part_type(b->msg.parts[1]), "message/delivery-status");
  }
}

// ---------------------------------------------------------------------------
// header_section()

TEST(DsnHeaderSection, WithBody) {
  EXPECT_EQ(header_section("A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore\r\n"), "A: 1\r\nB: 2\r\n\r\n");
  EXPECT_EQ(header_section(kContent), kHeaders);
}

TEST(DsnHeaderSection, WithoutBody) {
  EXPECT_EQ(header_section("A: 1\r\nB: 2\r\n"), "A: 1\r\nB: 2\r\n");
  EXPECT_EQ(header_section("A: 1"), "A: 1");
  EXPECT_EQ(header_section(""), "");
}

TEST(DsnHeaderSection, StartingWithBlankLine) {
  EXPECT_EQ(header_section("\r\nbody only\r\n\r\nmore\r\n"), "\r\n");
}

TEST(DsnHeaderSection, EmptyBodyAfterBlankLine) {
  EXPECT_EQ(header_section("A: 1\r\n\r\n"), "A: 1\r\n\r\n");
}

}  // namespace
}  // namespace tern::dsn
