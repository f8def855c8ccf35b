#include <gtest/gtest.h>

#include "tools/tern_sink/message_format.h"
#include "tools/tern_sink/report.h"

namespace tern::sink {
namespace {

constexpr int64_t kT0 = 1'795'398'000'000'000;  // microseconds since the epoch

SinkStats sample() {
  SinkStats s;
  s.connections = 3;
  s.record_message(kT0, 2, 1000);
  s.record_message(kT0 + 500'000, 1, 24);
  s.record_message(kT0 + 2'000'000, 1, 0);
  s.faults[static_cast<size_t>(Point::rcpt)] = 2;
  s.delays[static_cast<size_t>(Point::mail)] = 5;
  s.drops[static_cast<size_t>(Point::dot)] = 1;
  for (uint64_t us : {1000, 2000, 3000, 250'000}) s.e2e_us.record(us);
  return s;
}

TEST(SinkStats, WindowAndRate) {
  auto s = sample();
  EXPECT_EQ(s.messages, 3u);
  EXPECT_EQ(s.recipients, 4u);
  EXPECT_EQ(s.bytes, 1024u);
  EXPECT_DOUBLE_EQ(s.active_seconds(), 2.0);
  EXPECT_DOUBLE_EQ(s.messages_per_second(), 1.5);
  SinkStats one;
  one.record_message(kT0, 1, 1);
  EXPECT_EQ(one.active_seconds(), 0.0);  // no window with one message
  EXPECT_EQ(one.messages_per_second(), 0.0);
}

TEST(SinkStats, MergeAddsCountsAndWidensTheWindow) {
  SinkStats a = sample();
  SinkStats b;
  b.connections = 1;
  b.record_message(kT0 - 1'000'000, 1, 10);
  b.faults[static_cast<size_t>(Point::rcpt)] = 1;
  b.e2e_us.record(9000);
  SinkStats empty;
  a.merge(b);
  a.merge(empty);  // an idle worker changes nothing, its zero times included
  EXPECT_EQ(a.connections, 4u);
  EXPECT_EQ(a.messages, 4u);
  EXPECT_EQ(a.bytes, 1034u);
  EXPECT_EQ(a.first_message_us, kT0 - 1'000'000);
  EXPECT_EQ(a.last_message_us, kT0 + 2'000'000);
  EXPECT_EQ(a.faults[static_cast<size_t>(Point::rcpt)], 3u);
  EXPECT_EQ(a.e2e_us.count(), 5u);
}

// Percentiles are the top of their histogram bucket: 2000 us reads 2.007 ms.
TEST(SinkReport, JsonIsFlatAndComplete) {
  std::string json = format_json(sample());
  EXPECT_EQ(json,
            "{\"connections\":3,\"messages\":3,\"recipients\":4,\"bytes\":1024,\"store_errors\":0,"
            "\"elapsed_s\":2.000000,\"messages_per_s\":1.500,"
            "\"faults\":{\"banner\":0,\"helo\":0,\"mail\":0,\"rcpt\":2,\"data\":0,\"dot\":0},"
            "\"delays\":{\"banner\":0,\"helo\":0,\"mail\":5,\"rcpt\":0,\"data\":0,\"dot\":0},"
            "\"drops\":{\"banner\":0,\"helo\":0,\"mail\":0,\"rcpt\":0,\"data\":0,\"dot\":1},"
            "\"e2e_latency_ms\":{\"count\":4,\"p50\":2.007,\"p90\":250.000,\"p99\":250.000,\"p99.9\":250.000,"
            "\"max\":250.000}}\n");
}

TEST(SinkReport, JsonWithoutLatencyHasNulls) {
  std::string json = format_json(SinkStats{});
  EXPECT_NE(json.find("\"messages\":0"), std::string::npos);
  EXPECT_NE(json.find("\"e2e_latency_ms\":{\"count\":0,\"p50\":null,\"p90\":null,\"p99\":null,\"p99.9\":null,"
                      "\"max\":null}"),
            std::string::npos);
}

TEST(SinkReport, SummaryNamesEveryCount) {
  std::string text = format_summary(sample());
  EXPECT_EQ(text,
            "tern-sink summary\n"
            "  connections: 3\n"
            "  messages:    3\n"
            "  recipients:  4\n"
            "  bytes:       1024\n"
            "  throughput:  1.5 msg/s over 2.000 s (first to last message)\n"
            "  faults:      banner=0 helo=0 mail=0 rcpt=2 data=0 dot=0\n"
            "  delays:      banner=0 helo=0 mail=5 rcpt=0 data=0 dot=0\n"
            "  drops:       banner=0 helo=0 mail=0 rcpt=0 data=0 dot=1\n"
            "  e2e latency: 4 messages, p50 2.007 p90 250.000 p99 250.000 p99.9 250.000 max 250.000 ms\n");
  SinkStats failing;
  failing.store_errors = 2;
  std::string quiet = format_summary(failing);
  EXPECT_NE(quiet.find("store errors: 2"), std::string::npos);
  EXPECT_EQ(quiet.find("e2e latency"), std::string::npos);  // no stamped message, no line
}

TEST(SinkMessageFormat, MaildirStartsWithTheEnvelope) {
  Envelope env{"a@b.test", {"x@sink.test", "y@sink.test"}};
  EXPECT_EQ(format_maildir_message(env, "Subject: hi\r\n\r\nbody\r\nFrom here\r\n"),
            "Return-Path: <a@b.test>\n"
            "X-Tern-Sink-Rcpt: <x@sink.test>\n"
            "X-Tern-Sink-Rcpt: <y@sink.test>\n"
            "Subject: hi\n\nbody\nFrom here\n");
  EXPECT_EQ(format_maildir_message(Envelope{"", {"x@sink.test"}}, "no line end"),
            "Return-Path: <>\nX-Tern-Sink-Rcpt: <x@sink.test>\nno line end\n");
}

TEST(SinkMessageFormat, EnvelopeShowsTheEsmtpParametersAsSent) {
  Envelope env{.sender = "a@b.test",
               .recipients = {"x@sink.test", "y@sink.test", "z@sink.test"},
               .mail_params = "RET=HDRS ENVID=abc+2Bdef",
               .rcpt_params = {"NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@sink.test", "", "NOTIFY=NEVER"}};
  EXPECT_EQ(format_maildir_message(env, "Subject: hi\r\n\r\nbody\r\n"),
            "Return-Path: <a@b.test>\n"
            "X-Tern-Sink-Mail-Params: RET=HDRS ENVID=abc+2Bdef\n"
            "X-Tern-Sink-Rcpt: <x@sink.test>\n"
            "X-Tern-Sink-Rcpt-Params: x@sink.test NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@sink.test\n"
            "X-Tern-Sink-Rcpt: <y@sink.test>\n"
            "X-Tern-Sink-Rcpt: <z@sink.test>\n"
            "X-Tern-Sink-Rcpt-Params: z@sink.test NOTIFY=NEVER\n"
            "Subject: hi\n\nbody\n");
  EXPECT_EQ(format_mbox_message(env, "a\r\n", 0),
            "From a@b.test Thu Jan  1 00:00:00 1970\n"
            "Return-Path: <a@b.test>\n"
            "X-Tern-Sink-Mail-Params: RET=HDRS ENVID=abc+2Bdef\n"
            "X-Tern-Sink-Rcpt: <x@sink.test>\n"
            "X-Tern-Sink-Rcpt-Params: x@sink.test NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@sink.test\n"
            "X-Tern-Sink-Rcpt: <y@sink.test>\n"
            "X-Tern-Sink-Rcpt: <z@sink.test>\n"
            "X-Tern-Sink-Rcpt-Params: z@sink.test NOTIFY=NEVER\n"
            "a\n\n");
  // Only RCPT parameters, and fewer entries than recipients: no MAIL line,
  // the unmatched recipient gets none.
  Envelope rcpt_only{.sender = "",
                     .recipients = {"x@sink.test", "y@sink.test"},
                     .mail_params = "",
                     .rcpt_params = {"ORCPT=rfc822;bob@x.test"}};
  EXPECT_EQ(format_maildir_message(rcpt_only, "b\n"),
            "Return-Path: <>\n"
            "X-Tern-Sink-Rcpt: <x@sink.test>\n"
            "X-Tern-Sink-Rcpt-Params: x@sink.test ORCPT=rfc822;bob@x.test\n"
            "X-Tern-Sink-Rcpt: <y@sink.test>\n"
            "b\n");
  // Empty parameters everywhere: byte-identical to an envelope without them.
  Envelope empty{.sender = "a@b.test", .recipients = {"x@sink.test"}, .mail_params = "", .rcpt_params = {""}};
  EXPECT_EQ(format_maildir_message(empty, "c\n"), "Return-Path: <a@b.test>\nX-Tern-Sink-Rcpt: <x@sink.test>\nc\n");
}

TEST(SinkMessageFormat, MboxrdQuotesFromLines) {
  Envelope env{"a@b.test", {"x@sink.test"}};
  std::string entry = format_mbox_message(
      env, "Subject: q\r\n\r\nFrom me\r\n>From you\r\n>>From x\r\nFromage\r\n From no\r\n", kT0 / 1'000'000);
  EXPECT_EQ(entry,
            "From a@b.test Mon Nov 23 01:40:00 2026\n"
            "Return-Path: <a@b.test>\n"
            "X-Tern-Sink-Rcpt: <x@sink.test>\n"
            "Subject: q\n\n>From me\n>>From you\n>>>From x\nFromage\n From no\n\n");
  EXPECT_TRUE(format_mbox_message(Envelope{"", {"x@sink.test"}}, "a\r\n", 0)
                  .starts_with("From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"));
}

TEST(SinkMessageFormat, MaildirNamesAreUnique) {
  EXPECT_EQ(maildir_file_name(kT0 + 123, 42, 7, "sink.test"), "1795398000.M123P42Q7.sink.test");
  EXPECT_NE(maildir_file_name(kT0, 42, 7, "h"), maildir_file_name(kT0, 42, 8, "h"));
  EXPECT_EQ(maildir_file_name(kT0, 1, 0, "a/b:c"), "1795398000.M0P1Q0.a_b_c");
}

TEST(SinkMessageFormat, FindsTheSentStampInTheHeaderOnly) {
  EXPECT_EQ(find_sent_stamp("Subject: x\r\nX-Tern-Bench-Sent: 1795398000123456\r\n\r\nbody\r\n"), 1795398000123456);
  EXPECT_EQ(find_sent_stamp("x-tern-bench-sent:42\n\n"), 42);
  EXPECT_FALSE(find_sent_stamp("Subject: x\r\n\r\nX-Tern-Bench-Sent: 42\r\n").has_value());
  EXPECT_FALSE(find_sent_stamp("X-Tern-Bench-Sent: soon\r\n\r\n").has_value());
  EXPECT_FALSE(find_sent_stamp("").has_value());
  // A header section cut short (only its start is kept) still yields the stamp.
  EXPECT_EQ(find_sent_stamp("A: b\r\nX-Tern-Bench-Sent: 7\r\nC: d"), 7);
}

}  // namespace
}  // namespace tern::sink
