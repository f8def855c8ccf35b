#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/dsn/notice_plan.h"
#include "mta/smtp/received.h"
#include "mta/text.h"
#include "queue/envelope.h"
#include "tests/unit/dsn_report_reader.h"

namespace tern::dsn {
namespace {

using queue::Envelope;
using queue::Origin;
using queue::QueueName;
using queue::Recipient;
using queue::RecipientState;

constexpr int64_t kArrival = 1'700'000'000'000'000;
constexpr int64_t kNow = kArrival + 7'200'000'000LL;
constexpr int64_t kRetryUntil = kArrival + 5 * 86'400'000'000LL;
constexpr int64_t kHour = 3'600'000'000LL;

const std::string kHeaders =
    "From: Alice <alice@example.org>\r\n"
    "To: Bob <bob@example.com>\r\n"
    "Subject: hello\r\n"
    "Message-ID: <orig@example.org>\r\n"
    "\r\n";
const std::string kContent = kHeaders + "Hello Bob.\r\nThis is the body.\r\n";

// --- a compact reader of the built reports ---------------------------------

using Fields = std::vector<report_reader::Field>;
using report_reader::get;
using report_reader::Part;
using report_reader::part_type;

struct Parsed {
  Fields headers;
  std::vector<Part> parts;
  std::vector<Fields> status;  // per-message group, then one per recipient
};

Parsed parse(std::string_view content) {
  report_reader::check_lines(content);
  report_reader::Message m = report_reader::parse_message(content);
  Parsed p{std::move(m.headers), std::move(m.parts), {}};
  for (const Part& part : p.parts) {
    const std::string type = part_type(part);
    if (type == "message/delivery-status" || type == "message/global-delivery-status")
      p.status = report_reader::status_groups(part.body);
  }
  return p;
}

std::vector<std::string> part_types(const Parsed& p) {
  std::vector<std::string> out;
  for (const auto& part : p.parts) out.push_back(part_type(part));
  return out;
}

std::vector<std::string> final_recipients(const Parsed& p) {
  std::vector<std::string> out;
  for (size_t i = 1; i < p.status.size(); ++i) out.push_back(get(p.status[i], "Final-Recipient").value_or("?"));
  return out;
}

bool has_8bit(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  return false;
}

// --- fixtures -------------------------------------------------------------

Recipient rcpt(std::string address, uint8_t notify = 0) {
  Recipient r;
  r.address = std::move(address);
  r.notify = notify;
  r.status = "5.1.1";
  r.remote_mta = "mx.example.com";
  r.diagnostic = "550 5.1.1 no such user";
  r.last_error = "550 5.1.1 no such user";
  r.last_attempt_us = kArrival + kHour;
  return r;
}

Envelope original() {
  Envelope e;
  e.id = "ORIG0000000001";
  e.sender = "alice@example.org";
  e.recipients = {rcpt("bob@example.com"), rcpt("carol@example.com")};
  e.arrival_us = kArrival;
  e.message_id = "<orig@example.org>";
  e.protocol = "ESMTP";
  e.queue = QueueName::retry1;
  e.body_size = kContent.size();
  e.body_chunks = 1;
  return e;
}

NoticeSettings settings() {
  NoticeSettings s;
  s.hostname = "mx.example.net";
  return s;
}

struct Ids {
  int n = 0;
  std::function<std::string()> fn() {
    return [this] { return "NOTICE" + std::to_string(++n); };
  }
};

NoticePlan plan(const Envelope& e, std::vector<RecipientEvent> events, const NoticeSettings& s, Ids& ids,
                std::string_view content = kContent) {
  return plan_notices(e, events, content, s, kNow, kRetryUntil, ids.fn());
}

// The envelope every notice has.
void expect_notice_envelope(const Notice& n, const std::string& to, const std::string& id, Origin origin) {
  const Envelope& e = n.envelope;
  EXPECT_EQ(e.id, id);
  EXPECT_EQ(e.sender, "");
  ASSERT_EQ(e.recipients.size(), 1u);
  EXPECT_EQ(e.recipients[0].address, to);
  EXPECT_EQ(e.recipients[0].state, RecipientState::pending);
  EXPECT_EQ(e.queue, QueueName::incoming);
  EXPECT_EQ(e.body_chunks, 1u);
  EXPECT_EQ(e.body_size, n.content.size());
  EXPECT_EQ(e.arrival_us, kNow);
  EXPECT_EQ(e.next_attempt_us, kNow);
  EXPECT_EQ(e.origin, origin);
  EXPECT_EQ(e.message_id, concat({"<", id, "@mx.example.net>"}));
  EXPECT_EQ(e.body_type, has_8bit(n.content) ? "8BITMIME" : "");
  const Parsed p = parse(n.content);
  EXPECT_EQ(get(p.headers, "To"), concat({"<", to, ">"}));
  EXPECT_EQ(get(p.headers, "Message-ID"), e.message_id);
  ASSERT_FALSE(p.status.empty());
  EXPECT_EQ(get(p.status[0], "X-Tern-Queue-ID"), "ORIG0000000001");
}

// --- wants() --------------------------------------------------------------

TEST(NoticeWants, NotifyAbsentMeansFailureAndDelay) {
  EXPECT_TRUE(wants(0, Action::failed));
  EXPECT_TRUE(wants(0, Action::delayed));
  EXPECT_FALSE(wants(0, Action::delivered));
  EXPECT_FALSE(wants(0, Action::relayed));
}

TEST(NoticeWants, NeverMeansNothing) {
  for (Action a : {Action::failed, Action::delayed, Action::delivered, Action::relayed})
    EXPECT_FALSE(wants(queue::notify_never, a)) << action_name(a);
}

TEST(NoticeWants, SuccessOnly) {
  const uint8_t n = queue::notify_success;
  EXPECT_FALSE(wants(n, Action::failed));
  EXPECT_FALSE(wants(n, Action::delayed));
  EXPECT_TRUE(wants(n, Action::delivered));
  EXPECT_TRUE(wants(n, Action::relayed));
}

TEST(NoticeWants, Combinations) {
  const uint8_t fd = queue::notify_failure | queue::notify_delay;
  EXPECT_TRUE(wants(fd, Action::failed));
  EXPECT_TRUE(wants(fd, Action::delayed));
  EXPECT_FALSE(wants(fd, Action::delivered));
  EXPECT_FALSE(wants(fd, Action::relayed));

  EXPECT_TRUE(wants(queue::notify_failure, Action::failed));
  EXPECT_FALSE(wants(queue::notify_failure, Action::delayed));
  EXPECT_FALSE(wants(queue::notify_delay, Action::failed));
  EXPECT_TRUE(wants(queue::notify_delay, Action::delayed));

  const uint8_t all = queue::notify_success | queue::notify_failure | queue::notify_delay;
  for (Action a : {Action::failed, Action::delayed, Action::delivered, Action::relayed}) EXPECT_TRUE(wants(all, a));
  const uint8_t sf = queue::notify_success | queue::notify_failure;
  EXPECT_TRUE(wants(sf, Action::failed));
  EXPECT_FALSE(wants(sf, Action::delayed));
  EXPECT_TRUE(wants(sf, Action::delivered));
}

// --- plan_notices() ---------------------------------------------------------

TEST(NoticePlan, FailureOfTwoRecipientsIsOneReportToTheSender) {
  Ids ids;
  const NoticePlan p = plan(original(), {{0, Action::failed}, {1, Action::failed}}, settings(), ids);
  EXPECT_TRUE(p.dropped.empty());
  ASSERT_EQ(p.notices.size(), 1u);
  const Notice& n = p.notices[0];
  EXPECT_EQ(n.audience, Audience::sender);
  EXPECT_EQ(n.action, Action::failed);
  expect_notice_envelope(n, "alice@example.org", "NOTICE1", Origin::report);
  EXPECT_EQ(ids.n, 1);
  const Parsed r = parse(n.content);
  EXPECT_EQ(part_types(r),
            (std::vector<std::string>{"text/plain; charset=us-ascii", "message/delivery-status", "message/rfc822"}));
  EXPECT_EQ(r.parts[2].body, kContent);
  EXPECT_EQ(final_recipients(r), (std::vector<std::string>{"rfc822; bob@example.com", "rfc822; carol@example.com"}));
  for (size_t i = 1; i < r.status.size(); ++i) {
    EXPECT_EQ(get(r.status[i], "Action"), "failed");
    EXPECT_EQ(get(r.status[i], "Status"), "5.1.1");
    EXPECT_EQ(get(r.status[i], "Remote-MTA"), "dns; mx.example.com");
    EXPECT_EQ(get(r.status[i], "Diagnostic-Code"), "smtp; 550 5.1.1 no such user");
    EXPECT_EQ(get(r.status[i], "Last-Attempt-Date"), smtp::rfc5322_date(kArrival + kHour));
    EXPECT_FALSE(get(r.status[i], "Will-Retry-Until"));
  }
  EXPECT_EQ(get(r.status[0], "Reporting-MTA"), "dns; mx.example.net");
  EXPECT_EQ(get(r.status[0], "Arrival-Date"), smtp::rfc5322_date(kArrival));
  EXPECT_FALSE(get(r.status[0], "Original-Envelope-Id"));
  EXPECT_EQ(get(r.headers, "Subject"), "Undelivered Mail Returned to Sender");
  EXPECT_EQ(get(r.headers, "In-Reply-To"), "<orig@example.org>");
  EXPECT_EQ(get(r.headers, "Date"), smtp::rfc5322_date(kNow));
}

TEST(NoticePlan, FailureCopyToPostmaster) {
  NoticeSettings s = settings();
  s.failure_copy_to = "postmaster@example.net";
  s.failure_copy_content = false;
  Ids ids;
  const NoticePlan p = plan(original(), {{0, Action::failed}, {1, Action::failed}}, s, ids);
  ASSERT_EQ(p.notices.size(), 2u);
  EXPECT_EQ(p.notices[0].audience, Audience::sender);
  expect_notice_envelope(p.notices[0], "alice@example.org", "NOTICE1", Origin::report);
  const Notice& copy = p.notices[1];
  EXPECT_EQ(copy.audience, Audience::postmaster_copy);
  EXPECT_EQ(copy.action, Action::failed);
  expect_notice_envelope(copy, "postmaster@example.net", "NOTICE2", Origin::postmaster_notice);
  const Parsed r = parse(copy.content);
  EXPECT_EQ(part_types(r), (std::vector<std::string>{"text/plain; charset=us-ascii", "message/delivery-status"}));
  EXPECT_EQ(copy.content.find("This is the body."), std::string::npos);
  EXPECT_EQ(copy.content.find("message/rfc822"), std::string::npos);
  EXPECT_EQ(final_recipients(r).size(), 2u);
  EXPECT_NE(get(r.headers, "Subject")->find("Postmaster Copy"), std::string::npos);
  // The sender's report still carries the message.
  EXPECT_EQ(parse(p.notices[0].content).parts.size(), 3u);

  s.failure_copy_content = true;
  Ids ids2;
  const NoticePlan q = plan(original(), {{0, Action::failed}}, s, ids2);
  ASSERT_EQ(q.notices.size(), 2u);
  const Parsed rc = parse(q.notices[1].content);
  ASSERT_EQ(rc.parts.size(), 3u);
  EXPECT_EQ(part_type(rc.parts[2]), "message/rfc822");
  EXPECT_EQ(rc.parts[2].body, kContent);
}

TEST(NoticePlan, RetHdrsReturnsHeadersOnly) {
  Envelope e = original();
  e.ret = "HDRS";
  NoticeSettings s = settings();
  s.failure_copy_to = "postmaster@example.net";
  s.failure_copy_content = true;
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}}, s, ids);
  ASSERT_EQ(p.notices.size(), 2u);
  for (const Notice& n : p.notices) {
    const Parsed r = parse(n.content);
    ASSERT_EQ(r.parts.size(), 3u);
    EXPECT_EQ(part_type(r.parts[2]), "text/rfc822-headers");
    EXPECT_EQ(r.parts[2].body, kHeaders);
    EXPECT_EQ(n.content.find("This is the body."), std::string::npos);
  }
}

TEST(NoticePlan, RetFullAndLargeMessage) {
  Envelope e = original();
  e.ret = "FULL";
  NoticeSettings s = settings();
  s.max_returned_size = kContent.size() - 1;
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}}, s, ids);
  ASSERT_EQ(p.notices.size(), 1u);
  const Parsed r = parse(p.notices[0].content);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(part_type(r.parts[2]), "text/rfc822-headers");
}

TEST(NoticePlan, BinaryMimeOriginalReturnsHeaders) {
  Envelope e = original();
  e.body_type = "BINARYMIME";
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}}, settings(), ids);
  ASSERT_EQ(p.notices.size(), 1u);
  const Parsed r = parse(p.notices[0].content);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(part_type(r.parts[2]), "text/rfc822-headers");
}

TEST(NoticePlan, NotifyNeverRecipientIsNotListed) {
  Envelope e = original();
  e.recipients[1].notify = queue::notify_never;
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}, {1, Action::failed}}, settings(), ids);
  ASSERT_EQ(p.notices.size(), 1u);
  const Parsed r = parse(p.notices[0].content);
  EXPECT_EQ(final_recipients(r), (std::vector<std::string>{"rfc822; bob@example.com"}));
  EXPECT_EQ(p.notices[0].content.find("carol@example.com"), std::string::npos);

  // Only NEVER recipients failing: no notice at all, nothing dropped, no id used.
  Ids ids2;
  const NoticePlan q = plan(e, {{1, Action::failed}}, settings(), ids2);
  EXPECT_TRUE(q.notices.empty());
  EXPECT_TRUE(q.dropped.empty());
  EXPECT_EQ(ids2.n, 0);
}

TEST(NoticePlan, NotifyDelayOnlyGetsNoFailureReport) {
  Envelope e = original();
  e.recipients[0].notify = queue::notify_delay;
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}}, settings(), ids);
  EXPECT_TRUE(p.notices.empty());
}

TEST(NoticePlan, SuccessReportForRelayed) {
  Envelope e = original();
  e.ret = "FULL";  // RET is about failures: a success report returns the header only
  e.recipients[0].notify = queue::notify_success;
  e.recipients[0].status = "2.0.0";
  e.recipients[0].diagnostic = "250 2.0.0 Ok: queued as 12345";
  e.recipients[0].last_error.clear();
  e.recipients[0].state = RecipientState::delivered;
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::relayed}}, settings(), ids);
  ASSERT_EQ(p.notices.size(), 1u);
  const Notice& n = p.notices[0];
  EXPECT_EQ(n.audience, Audience::sender);
  expect_notice_envelope(n, "alice@example.org", "NOTICE1", Origin::report);
  const Parsed r = parse(n.content);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(part_type(r.parts[2]), "text/rfc822-headers");
  EXPECT_EQ(r.parts[2].body, kHeaders);
  ASSERT_EQ(r.status.size(), 2u);
  EXPECT_EQ(get(r.status[1], "Action"), "relayed");
  EXPECT_EQ(get(r.status[1], "Status"), "2.0.0");
  EXPECT_EQ(get(r.status[1], "Remote-MTA"), "dns; mx.example.com");
  EXPECT_FALSE(get(r.status[1], "Diagnostic-Code"));  // a success carries no diagnostic
  EXPECT_EQ(get(r.headers, "Subject"), "Successful Mail Delivery Report");
}

TEST(NoticePlan, DeliveredWithoutSuccessIsNothing) {
  for (uint8_t notify : {uint8_t{0}, uint8_t{queue::notify_failure | queue::notify_delay}}) {
    Envelope e = original();
    e.recipients[0].notify = notify;
    Ids ids;
    const NoticePlan p = plan(e, {{0, Action::delivered}, {1, Action::relayed}}, settings(), ids);
    EXPECT_TRUE(p.notices.empty());
    EXPECT_TRUE(p.dropped.empty());
  }
}

TEST(NoticePlan, DelayedReport) {
  Envelope e = original();
  e.recipients[0].status = "4.2.2";
  e.recipients[0].diagnostic = "452 4.2.2 mailbox full";
  e.recipients[0].last_error = "452 4.2.2 mailbox full";
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::delayed}}, settings(), ids);
  ASSERT_EQ(p.notices.size(), 1u);
  const Notice& n = p.notices[0];
  EXPECT_EQ(n.action, Action::delayed);
  EXPECT_EQ(n.audience, Audience::sender);
  expect_notice_envelope(n, "alice@example.org", "NOTICE1", Origin::report);
  const Parsed r = parse(n.content);
  ASSERT_EQ(r.status.size(), 2u);
  EXPECT_EQ(get(r.status[1], "Action"), "delayed");
  EXPECT_EQ(get(r.status[1], "Status"), "4.2.2");
  EXPECT_EQ(get(r.status[1], "Will-Retry-Until"), smtp::rfc5322_date(kRetryUntil));
  EXPECT_EQ(get(r.status[1], "Diagnostic-Code"), "smtp; 452 4.2.2 mailbox full");
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(part_type(r.parts[2]), "text/rfc822-headers");
  EXPECT_EQ(get(r.headers, "Subject"), "Delayed Mail (still being retried)");
}

TEST(NoticePlan, DefaultStatusAndOwnReason) {
  Envelope e = original();
  e.recipients[0].status.clear();
  e.recipients[0].diagnostic.clear();
  e.recipients[0].remote_mta.clear();
  e.recipients[0].last_error = "DNS: example.com does not exist";
  e.recipients[1].status.clear();
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}}, settings(), ids);
  ASSERT_EQ(p.notices.size(), 1u);
  const Parsed r = parse(p.notices[0].content);
  ASSERT_EQ(r.status.size(), 2u);
  EXPECT_EQ(get(r.status[1], "Status"), "5.0.0");
  EXPECT_EQ(get(r.status[1], "Diagnostic-Code"), "X-Tern; DNS: example.com does not exist");
  EXPECT_FALSE(get(r.status[1], "Remote-MTA"));

  Ids ids2;
  const NoticePlan d = plan(e, {{1, Action::delayed}}, settings(), ids2);
  ASSERT_EQ(d.notices.size(), 1u);
  const Parsed rd = parse(d.notices[0].content);
  ASSERT_EQ(rd.status.size(), 2u);
  EXPECT_EQ(get(rd.status[1], "Status"), "4.0.0");
}

TEST(NoticePlan, SeveralKindsGiveOneNoticeEach) {
  Envelope e = original();
  e.recipients.push_back(rcpt("dave@example.com", queue::notify_success));
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}, {1, Action::delayed}, {2, Action::delivered}}, settings(), ids);
  ASSERT_EQ(p.notices.size(), 3u);
  EXPECT_EQ(p.notices[0].action, Action::failed);
  EXPECT_EQ(p.notices[1].action, Action::delayed);
  EXPECT_EQ(final_recipients(parse(p.notices[0].content)), (std::vector<std::string>{"rfc822; bob@example.com"}));
  EXPECT_EQ(final_recipients(parse(p.notices[1].content)), (std::vector<std::string>{"rfc822; carol@example.com"}));
  EXPECT_EQ(final_recipients(parse(p.notices[2].content)), (std::vector<std::string>{"rfc822; dave@example.com"}));
  EXPECT_EQ(get(parse(p.notices[2].content).status[1], "Action"), "delivered");
  EXPECT_EQ(p.notices[0].envelope.id, "NOTICE1");
  EXPECT_EQ(p.notices[1].envelope.id, "NOTICE2");
  EXPECT_EQ(p.notices[2].envelope.id, "NOTICE3");
  EXPECT_EQ(ids.n, 3);
}

TEST(NoticePlan, EventForUnknownRecipientIsIgnored) {
  Ids ids;
  const NoticePlan p = plan(original(), {{7, Action::failed}}, settings(), ids);
  EXPECT_TRUE(p.notices.empty());
  EXPECT_TRUE(p.dropped.empty());
}

TEST(NoticePlan, NullSenderFailureIsADoubleBounce) {
  for (Origin origin : {Origin::received, Origin::report}) {
    Envelope e = original();
    e.sender.clear();
    e.origin = origin;
    NoticeSettings s = settings();
    s.double_bounce_to = "postmaster@example.net";
    s.failure_copy_to = "copies@example.net";  // no copy of a double bounce
    Ids ids;
    const NoticePlan p = plan(e, {{0, Action::failed}, {1, Action::failed}}, s, ids);
    EXPECT_TRUE(p.dropped.empty());
    ASSERT_EQ(p.notices.size(), 1u);
    const Notice& n = p.notices[0];
    EXPECT_EQ(n.audience, Audience::double_bounce);
    EXPECT_EQ(n.action, Action::failed);
    expect_notice_envelope(n, "postmaster@example.net", "NOTICE1", Origin::postmaster_notice);
    const Parsed r = parse(n.content);
    EXPECT_EQ(final_recipients(r).size(), 2u);
    ASSERT_EQ(r.parts.size(), 3u);
    EXPECT_EQ(part_type(r.parts[2]), "message/rfc822");
    EXPECT_NE(get(r.headers, "Subject")->find("Postmaster Notice"), std::string::npos);
    EXPECT_FALSE(get(r.status[0], "X-Tern-Sender"));
  }
}

TEST(NoticePlan, NullSenderWithoutDoubleBounceAddressIsDropped) {
  Envelope e = original();
  e.sender.clear();
  NoticeSettings s = settings();
  s.double_bounce_to.clear();
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}}, s, ids);
  EXPECT_TRUE(p.notices.empty());
  ASSERT_EQ(p.dropped.size(), 1u);
  EXPECT_FALSE(p.dropped[0].empty());
  EXPECT_EQ(ids.n, 0);
}

TEST(NoticePlan, FailedPostmasterNoticeIsDropped) {
  Envelope e = original();
  e.sender.clear();
  e.origin = Origin::postmaster_notice;
  NoticeSettings s = settings();
  s.double_bounce_to = "postmaster@example.net";
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}, {1, Action::failed}}, s, ids);
  EXPECT_TRUE(p.notices.empty());
  ASSERT_EQ(p.dropped.size(), 1u);
  EXPECT_FALSE(p.dropped[0].empty());
  EXPECT_EQ(ids.n, 0);
}

TEST(NoticePlan, NullSenderDelayOrSuccessIsNothing) {
  Envelope e = original();
  e.sender.clear();
  e.recipients[0].notify = queue::notify_success | queue::notify_delay;
  NoticeSettings s = settings();
  s.double_bounce_to = "postmaster@example.net";
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::delayed}, {1, Action::delayed}, {0, Action::delivered}}, s, ids);
  EXPECT_TRUE(p.notices.empty());
  EXPECT_TRUE(p.dropped.empty());
  EXPECT_EQ(ids.n, 0);
}

TEST(NoticePlan, BodyTypeFollowsEightBitContent) {
  Ids ids;
  const NoticePlan seven = plan(original(), {{0, Action::failed}}, settings(), ids);
  ASSERT_EQ(seven.notices.size(), 1u);
  EXPECT_EQ(seven.notices[0].envelope.body_type, "");
  EXPECT_FALSE(has_8bit(seven.notices[0].content));

  const std::string eight = kHeaders + "Caf\xe9\r\n";
  const NoticePlan p = plan(original(), {{0, Action::failed}}, settings(), ids, eight);
  ASSERT_EQ(p.notices.size(), 1u);
  EXPECT_EQ(p.notices[0].envelope.body_type, "8BITMIME");
  EXPECT_FALSE(p.notices[0].envelope.smtputf8);
  const Parsed r = parse(p.notices[0].content);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(get(r.parts[2].headers, "Content-Transfer-Encoding"), "8bit");

  // The 8-bit octet is in the body only: a delay report (headers) is 7-bit.
  const NoticePlan d = plan(original(), {{0, Action::delayed}}, settings(), ids, eight);
  ASSERT_EQ(d.notices.size(), 1u);
  EXPECT_EQ(d.notices[0].envelope.body_type, "");
}

TEST(NoticePlan, SmtpUtf8Original) {
  const std::string utf8_sender = "j\xc3\xb6s\xc3\xa9@\xe4\xbe\x8b\xe3\x81\x88.test";
  Envelope e = original();
  e.smtputf8 = true;
  e.sender = utf8_sender;
  e.recipients[0].address =
      "b\xc3\xb6"
      "b@example.com";
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}}, settings(), ids);
  ASSERT_EQ(p.notices.size(), 1u);
  const Notice& n = p.notices[0];
  expect_notice_envelope(n, utf8_sender, "NOTICE1", Origin::report);
  EXPECT_TRUE(n.envelope.smtputf8);
  EXPECT_EQ(n.envelope.body_type, "8BITMIME");
  const Parsed r = parse(n.content);
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(part_type(r.parts[1]), "message/global-delivery-status");
  EXPECT_EQ(part_type(r.parts[2]), "message/global");
  EXPECT_EQ(final_recipients(r), (std::vector<std::string>{"utf-8; b\xc3\xb6"
                                                           "b@example.com"}));
}

TEST(NoticePlan, EnvidAndOrcptRoundTrip) {
  Envelope e = original();
  e.envid = "QQ314159";
  e.recipients[0].orcpt = "rfc822;Bob@Example.COM";
  e.recipients[1].orcpt = "";
  Ids ids;
  const NoticePlan p = plan(e, {{0, Action::failed}, {1, Action::failed}}, settings(), ids);
  ASSERT_EQ(p.notices.size(), 1u);
  const Parsed r = parse(p.notices[0].content);
  ASSERT_EQ(r.status.size(), 3u);
  EXPECT_EQ(get(r.status[0], "Original-Envelope-Id"), "QQ314159");
  EXPECT_EQ(get(r.status[1], "Original-Recipient"), "rfc822; Bob@Example.COM");
  EXPECT_FALSE(get(r.status[2], "Original-Recipient"));
}

// --- delay_notice_due() -------------------------------------------------------

struct DelayCase {
  Envelope env = original();
  NoticeSettings s = settings();
  DelayCase() {
    env.queue = QueueName::retry2;
    s.delay = DelayNotices::on_retry2;
  }
  bool due(int64_t now = kNow) const { return delay_notice_due(env, env.recipients[0], s, now); }
};

TEST(DelayNoticeDue, Off) {
  DelayCase c;
  c.s.delay = DelayNotices::off;
  EXPECT_FALSE(c.due());
  EXPECT_FALSE(c.due(kArrival + 100 * kHour));
}

TEST(DelayNoticeDue, OnRetry2OnlyInRetry2) {
  DelayCase c;
  EXPECT_TRUE(c.due());
  for (QueueName q : {QueueName::incoming, QueueName::active, QueueName::retry1, QueueName::hold}) {
    c.env.queue = q;
    EXPECT_FALSE(c.due()) << to_string(q);
  }
}

TEST(DelayNoticeDue, AfterAge) {
  DelayCase c;
  c.s.delay = DelayNotices::after_age;
  c.s.delay_after_ms = 4 * 3'600'000LL;
  c.env.queue = QueueName::retry1;  // the queue does not matter
  EXPECT_FALSE(c.due(kArrival));
  EXPECT_FALSE(c.due(kArrival + 4 * kHour - 1));
  EXPECT_TRUE(c.due(kArrival + 4 * kHour));
  EXPECT_TRUE(c.due(kArrival + 10 * kHour));
  c.env.queue = QueueName::retry2;
  EXPECT_FALSE(c.due(kArrival + kHour));
}

TEST(DelayNoticeDue, NotAgainWithinInterval) {
  for (DelayNotices mode : {DelayNotices::on_retry2, DelayNotices::after_age}) {
    DelayCase c;
    c.s.delay = mode;
    c.s.delay_after_ms = 3'600'000LL;
    c.s.delay_interval_ms = 24 * 3'600'000LL;
    const int64_t notified = kArrival + 2 * kHour;
    c.env.recipients[0].delay_notified_us = notified;
    EXPECT_FALSE(c.due(notified + kHour));
    EXPECT_FALSE(c.due(notified + 24 * kHour - 1));
    EXPECT_TRUE(c.due(notified + 24 * kHour));
    EXPECT_TRUE(c.due(notified + 30 * kHour));
  }
}

TEST(DelayNoticeDue, NeverForFinishedRecipients) {
  for (RecipientState st : {RecipientState::delivered, RecipientState::failed}) {
    DelayCase c;
    c.env.recipients[0].state = st;
    EXPECT_FALSE(c.due());
  }
}

TEST(DelayNoticeDue, NotifyDecides) {
  struct Case {
    uint8_t notify;
    bool due;
  };
  const Case cases[] = {
      {0, true},
      {queue::notify_never, false},
      {queue::notify_success, false},
      {queue::notify_failure, false},
      {queue::notify_delay, true},
      {queue::notify_failure | queue::notify_delay, true},
      {queue::notify_success | queue::notify_delay, true},
  };
  for (const Case& k : cases) {
    DelayCase c;
    c.env.recipients[0].notify = k.notify;
    EXPECT_EQ(c.due(), k.due) << int(k.notify);
  }
}

TEST(DelayNoticeDue, NeverForNullSender) {
  DelayCase c;
  c.env.sender.clear();
  EXPECT_FALSE(c.due());
  c.s.delay = DelayNotices::after_age;
  EXPECT_FALSE(c.due(kArrival + 100 * kHour));
}

}  // namespace
}  // namespace tern::dsn
