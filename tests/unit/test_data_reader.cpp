#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "mta/smtp/data_reader.h"

namespace tern::smtp {
namespace {

using Mode = DataReader::Mode;

// Everything observable after feeding an input.
struct Outcome {
  size_t consumed = 0;
  bool done = false;
  std::string output;
  int code = 0;  // verdict code, 0 for none
  std::string enhanced;
  uint64_t size = 0;
  std::string message_id;
  unsigned received = 0;
  bool operator==(const Outcome&) const = default;
};

void PrintTo(const Outcome& o, std::ostream* os) {
  *os << "{consumed=" << o.consumed << " done=" << o.done << " output=" << testing::PrintToString(o.output)
      << " code=" << o.code << " enhanced=" << o.enhanced << " size=" << o.size
      << " message_id=" << testing::PrintToString(o.message_id) << " received=" << o.received << "}";
}

ContentLimits limits_with(bool allow_bare_lf) {
  ContentLimits limits;
  limits.allow_bare_lf = allow_bare_lf;
  return limits;
}

// Feeds `input` in pieces that end at `cuts` (ascending offsets), taking the
// output after each piece; calls finish() at the end in BDAT mode.
Outcome run(Mode mode, ContentLimits limits, std::string_view input, const std::vector<size_t>& cuts = {}) {
  DataReader reader(mode, limits);
  Outcome o;
  size_t begin = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (const size_t end : ends) {
    const std::string_view piece = input.substr(begin, end - begin);
    const size_t consumed = reader.feed(piece);
    EXPECT_LE(consumed, piece.size());
    if (mode == Mode::bdat || !reader.done()) {
      EXPECT_EQ(consumed, piece.size());
    }
    o.consumed += consumed;
    o.output += reader.take_output();
    EXPECT_EQ(reader.pending_output(), 0u);
    begin = end;
  }
  if (mode == Mode::bdat) reader.finish();
  o.output += reader.take_output();
  o.done = reader.done();
  if (const std::optional<Reply> verdict = reader.verdict()) {
    o.code = verdict->code;
    o.enhanced = verdict->enhanced;
    EXPECT_FALSE(verdict->text.empty());
  }
  o.size = reader.size();
  o.message_id = reader.message_id();
  o.received = reader.received_headers();
  return o;
}

Outcome run_data(std::string_view input, bool allow_bare_lf = false) {
  return run(Mode::data, limits_with(allow_bare_lf), input);
}

TEST(DataReader, EndsAtCrLfDotCrLfAndLeavesPipelinedCommand) {
  const std::string input = "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n";
  const Outcome o = run_data(input);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.output, "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_EQ(o.consumed, input.size() - 6);
  EXPECT_EQ(input.substr(o.consumed), "QUIT\r\n");
  EXPECT_EQ(o.code, 0);
  EXPECT_EQ(o.size, o.output.size());
}

TEST(DataReader, EmptyMessage) {
  const Outcome o = run_data(".\r\nMAIL FROM:<a@b>\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.output, "");
  EXPECT_EQ(o.consumed, 3u);
  EXPECT_EQ(o.size, 0u);
}

TEST(DataReader, FeedAfterDoneConsumesNothing) {
  DataReader reader(Mode::data, ContentLimits{});
  EXPECT_EQ(reader.feed("a\r\n.\r\nRSET\r\n"), 6u);
  EXPECT_TRUE(reader.done());
  EXPECT_EQ(reader.feed("more\r\n.\r\n"), 0u);
  EXPECT_EQ(reader.take_output(), "a\r\n");
}

TEST(DataReader, NotDoneWithoutTerminator) {
  const Outcome o = run_data("a\r\nb\r\n");
  EXPECT_FALSE(o.done);
  EXPECT_EQ(o.output, "a\r\nb\r\n");
  EXPECT_EQ(o.consumed, 6u);
}

TEST(DataReader, DotUnstuffing) {
  EXPECT_EQ(run_data("..\r\n.\r\n").output, ".\r\n");
  EXPECT_EQ(run_data("..foo\r\n.\r\n").output, ".foo\r\n");
  EXPECT_EQ(run_data("...\r\n.\r\n").output, "..\r\n");
  EXPECT_EQ(run_data("a\r\n.b\r\n.\r\n").output, "a\r\nb\r\n");
  // Only a dot at the start of a line is stuffing.
  EXPECT_EQ(run_data("a.b\r\n.a.\r\n.\r\n").output, "a.b\r\na.\r\n");
  EXPECT_EQ(run_data(". \r\n.\r\n").output, " \r\n");
  EXPECT_EQ(run_data("..\r\n.\r\n").size, 3u);
}

// Each of these sequences ends the data for some implementation; here none
// may end it (SMTP smuggling). Strict mode refuses the bare line ends.
TEST(DataReader, SmugglingEndingsDoNotEndData) {
  struct Case {
    std::string sequence;
    bool has_bare_line_end;
  };
  const std::vector<Case> cases = {
      {"\n.\n", true},       {"\r.\r\n", true},      {"\n.\r\n", true},
      {"\r\n.\n", true},     {"\r\n.\r", true},      {"\r.\r", true},
      {"\r.\n", true},       {"\n.\r", true},        {std::string("\r\n\0.\r\n", 6), false},
      {"\r\n .\r\n", false}, {"\r\n\t.\r\n", false},
  };
  for (const Case& c : cases) {
    for (const bool allow : {false, true}) {
      const std::string input = "Subject: x\r\n\r\nhello" + c.sequence + "MAIL FROM:<evil@example.com>\r\nX";
      const Outcome o = run_data(input, allow);
      SCOPED_TRACE(testing::PrintToString(c.sequence) + (allow ? " allow_bare_lf" : " strict"));
      EXPECT_FALSE(o.done);
      EXPECT_EQ(o.consumed, input.size());
      if (c.has_bare_line_end && !allow) {
        EXPECT_EQ(o.code, 550);
        EXPECT_EQ(o.enhanced, "5.6.0");
        EXPECT_EQ(o.output, "");
      } else {
        EXPECT_EQ(o.code, 0);
        EXPECT_NE(o.output.find("MAIL FROM:<evil@example.com>\r\n"), std::string::npos);
      }
      // The real terminator still ends it afterwards.
      const Outcome ended = run_data(input + "\r\n.\r\n", allow);
      EXPECT_TRUE(ended.done);
      EXPECT_EQ(ended.consumed, input.size() + 5);
    }
  }
}

TEST(DataReader, BareLineEndsNormalisedWhenAllowed) {
  const Outcome o = run_data("a\nb\rc\r\r\nd\r\n.\r\n", true);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.code, 0);
  EXPECT_EQ(o.output, "a\r\nb\r\nc\r\n\r\nd\r\n");
  EXPECT_EQ(o.size, o.output.size());
}

TEST(DataReader, LoneDotLineWithBareLineEndIsContent) {
  // Output as a "." content line, which the relaying client dot-stuffs.
  EXPECT_EQ(run_data("a\r\n.\nb\r\n.\r\n", true).output, "a\r\n.\r\nb\r\n");
  EXPECT_EQ(run_data("a\n.\r\nb\r\n.\r\n", true).output, "a\r\n.\r\nb\r\n");
  EXPECT_EQ(run_data("a\r\n.\rb\r\n.\r\n", true).output, "a\r\n.\r\nb\r\n");
  EXPECT_EQ(run_data("a\n.\nb\r\n.\r\n", true).output, "a\r\n.\r\nb\r\n");
  // After a bare line end a dot followed by text is still unstuffed.
  EXPECT_EQ(run_data("a\n..b\r\n.\r\n", true).output, "a\r\n.b\r\n");
}

TEST(DataReader, BareLineEndsRefusedByDefault) {
  for (std::string_view input :
       {"a\nb\r\n.\r\n", "a\rb\r\n.\r\n", "a\r\r\n.\r\n", "\n.\r\n.\r\n", "a\r\n.\n\r\n.\r\n"}) {
    const Outcome o = run_data(input);
    SCOPED_TRACE(testing::PrintToString(std::string(input)));
    EXPECT_TRUE(o.done);
    EXPECT_EQ(o.code, 550);
    EXPECT_EQ(o.enhanced, "5.6.0");
    EXPECT_EQ(o.output, "");
    EXPECT_EQ(o.consumed, input.size());
  }
}

TEST(DataReader, OutputDroppedOnceRefused) {
  DataReader reader(Mode::data, ContentLimits{});
  reader.feed("first\r\nsecond");
  EXPECT_EQ(reader.pending_output(), 13u);
  reader.feed("\nthird\r\n");
  EXPECT_EQ(reader.pending_output(), 0u);
  EXPECT_EQ(reader.take_output(), "");
  ASSERT_TRUE(reader.verdict().has_value());
  EXPECT_EQ(reader.verdict()->code, 550);
  EXPECT_EQ(reader.feed(".\r\n"), 3u);
  EXPECT_TRUE(reader.done());
}

TEST(DataReader, LineLengthLimit) {
  const std::string ok_line(998, 'x');  // 1000 octets with CRLF
  EXPECT_EQ(run_data(ok_line + "\r\n.\r\n").code, 0);
  const Outcome too_long = run_data(ok_line + "x\r\n.\r\n");
  EXPECT_TRUE(too_long.done);
  EXPECT_EQ(too_long.code, 500);
  EXPECT_EQ(too_long.enhanced, "5.5.2");
  EXPECT_EQ(too_long.output, "");
  // Counted after unstuffing.
  EXPECT_EQ(run_data("." + ok_line + "\r\n.\r\n").code, 0);
  // A huge line without end is flagged before it ends.
  DataReader reader(Mode::data, ContentLimits{});
  reader.feed(std::string(5000, 'y'));
  ASSERT_TRUE(reader.verdict().has_value());
  EXPECT_EQ(reader.verdict()->code, 500);
  EXPECT_EQ(reader.pending_output(), 0u);
}

TEST(DataReader, LineLengthCustomLimit) {
  ContentLimits limits;
  limits.max_line_length = 10;
  EXPECT_EQ(run(Mode::data, limits, "12345678\r\n.\r\n").code, 0);
  EXPECT_EQ(run(Mode::data, limits, "123456789\r\n.\r\n").code, 500);
  EXPECT_EQ(run(Mode::bdat, limits, "1234567890").code, 0);  // last line without CRLF: 10 octets
  EXPECT_EQ(run(Mode::bdat, limits, "12345678901").code, 500);
}

TEST(DataReader, SizeLimit) {
  ContentLimits limits;
  limits.max_size = 10;
  const Outcome at_limit = run(Mode::data, limits, "12345678\r\n.\r\n");
  EXPECT_EQ(at_limit.code, 0);
  EXPECT_EQ(at_limit.output, "12345678\r\n");
  EXPECT_EQ(run(Mode::data, limits, "123456789\r\n.\r\n").code, 552);  // one octet over
  const Outcome over = run(Mode::data, limits, "123456789\r\nmore\r\nand more\r\n.\r\nNOOP\r\n");
  EXPECT_TRUE(over.done);
  EXPECT_EQ(over.code, 552);
  EXPECT_EQ(over.enhanced, "5.3.4");
  EXPECT_EQ(over.output, "");
  EXPECT_EQ(over.size, 11u + 6 + 10);  // counting goes on
  EXPECT_EQ(over.consumed, 11u + 6 + 10 + 3);
}

TEST(DataReader, ReceivedHeadersCounted) {
  ContentLimits limits;
  limits.max_received = 2;
  const std::string two = "Received: from a\r\n\tby b\r\nreceived : from c\r\nX-Received: x\r\nSubject: s\r\n\r\n";
  const Outcome ok = run(Mode::data, limits, two + "Received: in body\r\n.\r\n");
  EXPECT_EQ(ok.received, 2u);
  EXPECT_EQ(ok.code, 0);
  const Outcome loop = run(Mode::data, limits, "RECEIVED: z\r\n" + two + ".\r\n");
  EXPECT_EQ(loop.received, 3u);
  EXPECT_EQ(loop.code, 554);
  EXPECT_EQ(loop.enhanced, "5.4.6");
  EXPECT_EQ(loop.output, "");
  EXPECT_TRUE(loop.done);
  // "Received" without a colon is no field.
  EXPECT_EQ(run_data("Received\r\nReceivedX: a\r\n\r\n.\r\n").received, 0u);
}

TEST(DataReader, OutputDroppedOnMailLoop) {
  ContentLimits limits;
  limits.max_received = 1;
  DataReader reader(Mode::data, limits);
  reader.feed("Received: a\r\nSubject: x\r\n");
  EXPECT_EQ(reader.pending_output(), 25u);
  reader.feed("Received: b\r\n");
  EXPECT_EQ(reader.pending_output(), 0u);
  reader.feed("\r\nbody\r\n");
  EXPECT_EQ(reader.take_output(), "");
  ASSERT_TRUE(reader.verdict().has_value());
  EXPECT_EQ(reader.verdict()->code, 554);
}

TEST(DataReader, MessageIdCaptured) {
  EXPECT_EQ(run_data("Message-ID: <abc@example.com>\r\n\r\nb\r\n.\r\n").message_id, "<abc@example.com>");
  EXPECT_EQ(run_data("message-id:<abc@example.com>  \r\n.\r\n").message_id, "<abc@example.com>");
  EXPECT_EQ(run_data("Message-Id:\r\n  <folded@example.com>\r\nSubject: x\r\n\r\n.\r\n").message_id,
            "<folded@example.com>");
  EXPECT_EQ(run_data("Message-ID: <a@\r\n example.com>\r\n\r\n.\r\n").message_id, "<a@ example.com>");
  EXPECT_EQ(run_data("Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\n\r\n.\r\n").message_id, "<first@x>");
  // Only in the header section.
  EXPECT_EQ(run_data("Subject: x\r\n\r\nMessage-ID: <body@x>\r\n.\r\n").message_id, "");
  EXPECT_EQ(run_data("X-Message-ID: <x@x>\r\n\r\n.\r\n").message_id, "");
  // Last header line ended by the terminator.
  EXPECT_EQ(run_data("Message-ID: <end@x>\r\n.\r\n").message_id, "<end@x>");
}

TEST(DataReader, MessageIdLengthBounded) {
  const std::string id998 = "<" + std::string(996, 'm') + ">";
  ContentLimits limits;
  limits.max_line_length = 100000;
  EXPECT_EQ(run(Mode::data, limits, "Message-ID: " + id998 + "\r\n\r\n.\r\n").message_id, id998);
  EXPECT_EQ(run(Mode::data, limits, "Message-ID: <" + std::string(997, 'm') + ">\r\n\r\n.\r\n").message_id, "");
  // A giant folded value is not captured either.
  std::string folded = "Message-ID: <x";
  for (int i = 0; i < 100; ++i) folded += "\r\n " + std::string(50, 'f');
  EXPECT_EQ(run(Mode::data, limits, folded + ">\r\n\r\n.\r\n").message_id, "");
  // A multi-megabyte header line is consumed and does not confuse header parsing.
  const Outcome giant =
      run(Mode::data, limits, "X-Big: " + std::string(3 << 20, 'g') + "\r\nMessage-ID: <ok@x>\r\n\r\n.\r\n");
  EXPECT_TRUE(giant.done);
  EXPECT_EQ(giant.message_id, "<ok@x>");
}

TEST(DataReader, VerdictPriority) {
  ContentLimits limits;
  limits.max_size = 50;
  limits.max_received = 0;
  limits.max_line_length = 20;
  const std::string loop = "Received: x\r\n";
  const std::string bare = "bare\nlf\r\n";
  const std::string long_line = std::string(25, 'l') + "\r\n";
  const std::string big = std::string(15, 'b') + "\r\n" + std::string(15, 'b') + "\r\n" + std::string(15, 'b') + "\r\n";
  EXPECT_EQ(run(Mode::data, limits, loop + bare + long_line + big + ".\r\n").code, 552);
  EXPECT_EQ(run(Mode::data, limits, loop + bare + long_line + ".\r\n").code, 554);
  EXPECT_EQ(run(Mode::data, limits, "\r\n" + bare + long_line + ".\r\n").code, 550);
  EXPECT_EQ(run(Mode::data, limits, "\r\n" + long_line + ".\r\n").code, 500);
  EXPECT_EQ(run(Mode::data, limits, "\r\nshort\r\n.\r\n").code, 0);
}

TEST(DataReader, BdatHasNoDotHandling) {
  const Outcome o = run(Mode::bdat, ContentLimits{}, "a\r\n.\r\n..b\r\n.");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.output, "a\r\n.\r\n..b\r\n.");
  EXPECT_EQ(o.consumed, 12u);
  EXPECT_EQ(o.code, 0);
}

TEST(DataReader, BdatFinalLineKeptAsIs) {
  const Outcome o = run(Mode::bdat, ContentLimits{}, "Message-ID: <last@x>");
  EXPECT_EQ(o.output, "Message-ID: <last@x>");
  EXPECT_EQ(o.message_id, "<last@x>");
  EXPECT_EQ(o.size, 20u);
}

TEST(DataReader, BdatLineRulesAcrossChunks) {
  EXPECT_EQ(run(Mode::bdat, ContentLimits{}, "a\r\nb", {2}).output, "a\r\nb");
  const Outcome bare_cr_at_end = run(Mode::bdat, ContentLimits{}, "a\r");
  EXPECT_EQ(bare_cr_at_end.code, 550);
  EXPECT_TRUE(bare_cr_at_end.done);
  const Outcome normalised = run(Mode::bdat, limits_with(true), "a\r");
  EXPECT_EQ(normalised.code, 0);
  EXPECT_EQ(normalised.output, "a\r\n");
  EXPECT_EQ(run(Mode::bdat, ContentLimits{}, "a\nb").code, 550);
  EXPECT_EQ(run(Mode::bdat, limits_with(true), "a\nb").output, "a\r\nb");
}

TEST(DataReader, BdatFeedAfterFinishConsumesNothing) {
  DataReader reader(Mode::bdat, ContentLimits{});
  EXPECT_EQ(reader.feed("x"), 1u);
  reader.finish();
  EXPECT_TRUE(reader.done());
  EXPECT_EQ(reader.feed("y"), 0u);
  EXPECT_EQ(reader.take_output(), "x");
}

TEST(DataReader, FinishDoesNotEndData) {
  DataReader reader(Mode::data, ContentLimits{});
  reader.feed("a\r\n");
  reader.finish();
  EXPECT_FALSE(reader.done());
}

// Property: however the input is cut, the outcome is the same.
TEST(DataReader, SplitInvariance) {
  const std::vector<std::string> inputs = {
      "Received: a\r\nMessage-ID:\r\n <id@x>\r\nSubject: s\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n",
      "a\n.\nb\r.\r\nc\n.\r\nd\r\n.\re\r\r\n..\r\n.\r\n",
      std::string("x\r\n\0.\r\n.\r\r\n.\r\n", 14),
      ".\r\n",
      "..\r\n...\r\n.\r\n",
      "\r\r\n\n\r\r\n.\r\n",
      "abc\r",
      "Message-ID: <z@x>\r\n\tcontinued\r\nReceived: 1\r\nReceived: 2\r\nReceived: 3\r\n\r\n.\r\n",
      std::string(40, 'L') + "\r\n" + std::string(5, 'm') + "\n.\r\n",
  };
  std::vector<ContentLimits> limit_sets;
  for (const bool allow : {false, true}) {
    ContentLimits limits = limits_with(allow);
    limit_sets.push_back(limits);
    limits.max_line_length = 12;
    limits.max_size = 30;
    limits.max_received = 2;
    limit_sets.push_back(limits);
  }
  for (const Mode mode : {Mode::data, Mode::bdat}) {
    for (const ContentLimits& limits : limit_sets) {
      for (const std::string& input : inputs) {
        SCOPED_TRACE(testing::PrintToString(input));
        // Output taken before a refusal differs with the cut; once refused
        // it is worthless anyway.
        auto comparable = [](Outcome o) {
          if (o.code != 0) o.output.clear();
          return o;
        };
        const Outcome whole = comparable(run(mode, limits, input));
        for (size_t cut = 0; cut <= input.size(); ++cut) {
          ASSERT_EQ(comparable(run(mode, limits, input, {cut})), whole) << "cut at " << cut;
        }
        std::vector<size_t> every_byte;
        for (size_t i = 1; i < input.size(); ++i) every_byte.push_back(i);
        ASSERT_EQ(comparable(run(mode, limits, input, every_byte)), whole) << "byte by byte";
      }
    }
  }
}

TEST(DataReader, LargeMessageByteByByteMatchesWhole) {
  std::string message = "Received: x\r\nMessage-ID: <big@x>\r\n\r\n";
  for (int i = 0; i < 2000; ++i) message += (i % 7 == 0 ? ".." : "") + std::string(size_t(i % 90), 'a') + "\r\n";
  message += ".\r\n";
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < message.size(); ++i) every_byte.push_back(i);
  const Outcome whole = run_data(message);
  EXPECT_TRUE(whole.done);
  EXPECT_EQ(whole.message_id, "<big@x>");
  EXPECT_EQ(whole.size, message.size() - 3 - 2000 / 7 - 1);
  EXPECT_EQ(run(Mode::data, ContentLimits{}, message, every_byte), whole);
}

}  // namespace
}  // namespace tern::smtp
