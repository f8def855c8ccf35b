#include "mta/delivery/client_transaction.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <optional>
#include <string>

#include "mta/smtp/params.h"

namespace tern::delivery {
namespace {

using Kind = RecipientOutcome::Kind;

smtp::ParsedReply reply(std::initializer_list<std::string_view> lines) {
  smtp::ReplyParser parser;
  for (std::string_view line : lines) parser.feed(line);
  return parser.reply();
}

smtp::EhloInfo ehlo(std::initializer_list<std::string_view> keywords) {
  smtp::ReplyParser parser;
  parser.feed("250-mx.example.test");
  for (std::string_view k : keywords) parser.feed("250-" + std::string(k));
  parser.feed("250 HELP");
  return smtp::parse_ehlo(parser.reply());
}

// Every outcome is of `kind` with `enhanced`, and `code` and `text` when given.
void expect_every(const std::vector<RecipientOutcome>& outcomes, Kind kind, const std::string& enhanced,
                  std::optional<int> code = std::nullopt, std::optional<std::string> text = std::nullopt) {
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.kind, kind) << o.text;
    EXPECT_EQ(o.enhanced, enhanced) << o.text;
    if (code) {
      EXPECT_EQ(o.code, *code) << o.text;
    }
    if (text) {
      EXPECT_EQ(o.text, *text);
    }
  }
}

// MAIL and every RCPT accepted.
void accept_envelope(ClientTransaction& tx) {
  tx.on_mail_reply(reply({"250 ok"}));
  for (size_t k = 0; k < tx.recipient_count(); ++k) tx.on_rcpt_reply(k, reply({"250 ok"}));
}

queue::Recipient recipient(std::string address) {
  queue::Recipient r;
  r.address = std::move(address);
  return r;
}

// A message with three recipients, sent to the second and third in the
// order {2, 1}: outcomes must name envelope indices, not positions.
struct Fixture {
  queue::Envelope envelope;
  std::string content = "Subject: t\r\n\r\nbody\r\n";
  OutboundMessage message;
  Fixture() {
    envelope.sender = "from@example.test";
    envelope.recipients = {recipient("zero@example.test"), recipient("one@example.test"),
                           recipient("two@example.test")};
    message = OutboundMessage{&envelope, {2, 1}, &content};
  }
};

TEST(ClientTransaction, MailCommandWithoutExtensionsCarriesNoParameters) {
  Fixture f;
  f.envelope.body_type = "8BITMIME";
  f.envelope.ret = "HDRS";
  f.envelope.envid = "id";
  const smtp::EhloInfo server = ehlo({});
  ClientTransaction tx(f.message, server);
  EXPECT_EQ(tx.mail_command(), "MAIL FROM:<from@example.test>\r\n");
  EXPECT_EQ(tx.rcpt_command(0), "RCPT TO:<two@example.test>\r\n");
}

TEST(ClientTransaction, MailCommandUsesWhatTheServerOffers) {
  Fixture f;
  f.envelope.body_type = "8BITMIME";
  f.envelope.smtputf8 = true;
  f.envelope.ret = "HDRS";
  f.envelope.envid = "q+1=x y";
  const smtp::EhloInfo server = ehlo({"SIZE 1000", "8BITMIME", "SMTPUTF8", "DSN"});
  ClientTransaction tx(f.message, server);
  EXPECT_EQ(tx.mail_command(), "MAIL FROM:<from@example.test> SIZE=" + std::to_string(f.content.size()) +
                                   " BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=q+2B1+3Dx+20y\r\n");
}

TEST(ClientTransaction, SizeWithoutALimitIsStillDeclared) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({"SIZE"});
  ClientTransaction tx(f.message, server);
  EXPECT_FALSE(tx.settled());
  EXPECT_EQ(tx.mail_command(), "MAIL FROM:<from@example.test> SIZE=" + std::to_string(f.content.size()) + "\r\n");
}

TEST(ClientTransaction, NullSender) {
  Fixture f;
  f.envelope.sender.clear();
  const smtp::EhloInfo server = ehlo({});
  EXPECT_EQ(ClientTransaction(f.message, server).mail_command(), "MAIL FROM:<>\r\n");
}

TEST(ClientTransaction, SevenBitMessagesDeclareNoBody) {
  Fixture f;
  f.envelope.body_type = "7BIT";
  const smtp::EhloInfo server = ehlo({"8BITMIME"});
  EXPECT_EQ(ClientTransaction(f.message, server).mail_command(), "MAIL FROM:<from@example.test>\r\n");
}

TEST(ClientTransaction, BdatCarriesTheWholeContentAsTheLastChunk) {
  Fixture f;
  f.content = "Subject: t\r\n\r\n.leading dot\r\n";  // the size as stored: BDAT does no dot-stuffing
  const smtp::EhloInfo server = ehlo({"CHUNKING"});
  EXPECT_EQ(ClientTransaction(f.message, server).bdat_command(),
            "BDAT " + std::to_string(f.content.size()) + " LAST\r\n");
  f.content.clear();
  EXPECT_EQ(ClientTransaction(f.message, server).bdat_command(), "BDAT 0 LAST\r\n");
}

TEST(ClientTransaction, BinaryMimeIsDeclaredOnlyToAServerWithBinaryMimeAndChunking) {
  Fixture f;
  f.envelope.body_type = "BINARYMIME";
  for (const smtp::EhloInfo& without : {ehlo({"BINARYMIME"}), ehlo({"CHUNKING"}), ehlo({"8BITMIME", "CHUNKING"})})
    EXPECT_EQ(ClientTransaction(f.message, without).mail_command(), "MAIL FROM:<from@example.test>\r\n");
  const smtp::EhloInfo server = ehlo({"8BITMIME", "BINARYMIME", "CHUNKING"});
  EXPECT_EQ(ClientTransaction(f.message, server).mail_command(), "MAIL FROM:<from@example.test> BODY=BINARYMIME\r\n");
  f.envelope.body_type = "8BITMIME";
  EXPECT_EQ(ClientTransaction(f.message, server).mail_command(), "MAIL FROM:<from@example.test> BODY=8BITMIME\r\n");
}

TEST(ClientTransaction, RcptCarriesNotifyAndOrcptOnlyWithDsn) {
  Fixture f;
  f.envelope.recipients[2].notify = queue::notify_success | queue::notify_failure | queue::notify_delay;
  f.envelope.recipients[2].orcpt = "rfc822;a+b=c@example.test";
  f.envelope.recipients[1].notify = queue::notify_never;
  const smtp::EhloInfo with_dsn = ehlo({"DSN"});
  ClientTransaction tx(f.message, with_dsn);
  EXPECT_EQ(tx.rcpt_command(0),
            "RCPT TO:<two@example.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;a+2Bb+3Dc@example.test\r\n");
  EXPECT_EQ(tx.rcpt_command(1), "RCPT TO:<one@example.test> NOTIFY=NEVER\r\n");
  const smtp::EhloInfo without = ehlo({"PIPELINING"});
  EXPECT_EQ(ClientTransaction(f.message, without).rcpt_command(0), "RCPT TO:<two@example.test>\r\n");
}

TEST(ClientTransaction, NotifyListsOnlyTheFlagsGiven) {
  Fixture f;
  f.envelope.recipients[2].notify = queue::notify_delay | queue::notify_failure;
  const smtp::EhloInfo server = ehlo({"DSN"});
  EXPECT_EQ(ClientTransaction(f.message, server).rcpt_command(0), "RCPT TO:<two@example.test> NOTIFY=FAILURE,DELAY\r\n");
}

TEST(Xtext, EncodesWhatXtextCannotCarryAndRoundTrips) {
  const std::string text = "a+b=c d\t~!\xc3\xa9";
  const std::string encoded = smtp::xtext_encode(text);
  EXPECT_EQ(encoded, "a+2Bb+3Dc+20d+09~!+C3+A9");
  std::string decoded;
  ASSERT_TRUE(smtp::xtext_decode(encoded, decoded));
  EXPECT_EQ(decoded, text);
  EXPECT_EQ(smtp::xtext_encode(""), "");
}

TEST(ClientTransaction, MessageOverTheServersSizeFailsWithoutDialogue) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({"SIZE " + std::to_string(f.content.size() - 1)});
  ClientTransaction tx(f.message, server);
  ASSERT_TRUE(tx.settled());
  auto outcomes = tx.take_outcomes();
  ASSERT_EQ(outcomes.size(), 2u);
  expect_every(outcomes, Kind::permanent, "5.3.4", 0);
  EXPECT_EQ(outcomes[0].recipient, 2u);
  EXPECT_EQ(outcomes[1].recipient, 1u);
}

TEST(ClientTransaction, MessageOfExactlyTheServersSizeGoes) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({"SIZE " + std::to_string(f.content.size())});
  EXPECT_FALSE(ClientTransaction(f.message, server).settled());
}

TEST(ClientTransaction, Smtputf8MessageToAServerWithoutItFails567) {
  Fixture f;
  f.envelope.smtputf8 = true;
  const smtp::EhloInfo without = ehlo({"8BITMIME"});
  ClientTransaction tx(f.message, without);
  ASSERT_TRUE(tx.settled());
  expect_every(tx.take_outcomes(), Kind::permanent, "5.6.7", 0);
  const smtp::EhloInfo with = ehlo({"SMTPUTF8"});
  EXPECT_FALSE(ClientTransaction(f.message, with).settled());
}

TEST(ClientTransaction, EachRecipientGetsItsOwnReplyAndTheAcceptedOnesTheFinalOne) {
  Fixture f;
  f.envelope.recipients.push_back(recipient("three@example.test"));
  f.message.recipients = {2, 1, 3};
  const smtp::EhloInfo server = ehlo({"PIPELINING"});
  ClientTransaction tx(f.message, server);
  tx.on_mail_reply(reply({"250 2.1.0 Ok"}));
  EXPECT_TRUE(tx.mail_accepted());
  tx.on_rcpt_reply(0, reply({"250 2.1.5 Ok"}));
  tx.on_rcpt_reply(1, reply({"550-5.1.1 no such", "550 5.1.1 user here"}));
  tx.on_rcpt_reply(2, reply({"450 mailbox busy"}));
  EXPECT_EQ(tx.accepted_count(), 1u);
  EXPECT_FALSE(tx.settled());
  tx.on_final_reply(reply({"250 2.0.0 Ok: queued as X"}));
  EXPECT_TRUE(tx.settled());
  auto o = tx.take_outcomes();
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[0].recipient, 2u);
  EXPECT_EQ(o[0].kind, Kind::delivered);
  EXPECT_EQ(o[0].code, 250);
  EXPECT_EQ(o[0].enhanced, "2.0.0");
  EXPECT_EQ(o[0].text, "Ok: queued as X");
  EXPECT_EQ(o[1].recipient, 1u);
  EXPECT_EQ(o[1].kind, Kind::permanent);
  EXPECT_EQ(o[1].code, 550);
  EXPECT_EQ(o[1].enhanced, "5.1.1");
  EXPECT_EQ(o[1].text, "no such user here");
  EXPECT_EQ(o[2].recipient, 3u);
  EXPECT_EQ(o[2].kind, Kind::temporary);
  EXPECT_EQ(o[2].enhanced, "4.0.0");  // the server gave none
  EXPECT_EQ(o[2].text, "mailbox busy");
}

TEST(ClientTransaction, RefusedMailDecidesEveryoneAndLaterPipelinedRepliesChangeNothing) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({"PIPELINING"});
  ClientTransaction tx(f.message, server);
  tx.on_mail_reply(reply({"451 4.3.0 try later"}));
  EXPECT_FALSE(tx.mail_accepted());
  EXPECT_TRUE(tx.settled());
  tx.on_rcpt_reply(0, reply({"503 5.5.1 need MAIL"}));
  tx.on_rcpt_reply(1, reply({"503 5.5.1 need MAIL"}));
  tx.on_data_refused(reply({"503 5.5.1 need MAIL"}));
  expect_every(tx.take_outcomes(), Kind::temporary, "4.3.0", 451, "try later");
}

TEST(ClientTransaction, RefusedDataFailsTheAcceptedRecipientsOnly) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({});
  ClientTransaction tx(f.message, server);
  tx.on_mail_reply(reply({"250 ok"}));
  tx.on_rcpt_reply(0, reply({"250 ok"}));
  tx.on_rcpt_reply(1, reply({"452 4.5.3 too many"}));
  tx.on_data_refused(reply({"554 5.0.0 no"}));
  auto o = tx.take_outcomes();
  EXPECT_EQ(o[0].kind, Kind::permanent);
  EXPECT_EQ(o[0].code, 554);
  EXPECT_EQ(o[1].kind, Kind::temporary);
  EXPECT_EQ(o[1].code, 452);
}

TEST(ClientTransaction, PositiveReplyToDataWithoutContentIsAProtocolError) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({});
  ClientTransaction tx(f.message, server);
  accept_envelope(tx);
  tx.on_data_refused(reply({"250 2.0.0 ok"}));
  expect_every(tx.take_outcomes(), Kind::temporary, "4.5.0", 250);
}

TEST(ClientTransaction, FinalReplyDecidesByClass) {
  for (auto [line, kind] : {std::pair{"552 5.3.4 too big", Kind::permanent}, std::pair{"452 4.3.1 full", Kind::temporary},
                            std::pair{"354 again?", Kind::temporary}}) {
    Fixture f;
    const smtp::EhloInfo server = ehlo({});
    ClientTransaction tx(f.message, server);
    accept_envelope(tx);
    tx.on_final_reply(reply({line}));
    for (const auto& o : tx.take_outcomes()) EXPECT_EQ(o.kind, kind) << line;
  }
}

TEST(ClientTransaction, UnexpectedReplyToRcptIsTemporary) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({});
  ClientTransaction tx(f.message, server);
  tx.on_mail_reply(reply({"250 ok"}));
  tx.on_rcpt_reply(0, reply({"354 what"}));
  EXPECT_EQ(tx.accepted_count(), 0u);
  auto o = tx.take_outcomes();
  EXPECT_EQ(o[0].kind, Kind::temporary);
  EXPECT_EQ(o[0].enhanced, "4.5.0");
}

TEST(ClientTransaction, ServiceClosingFailsEveryoneStillOpenWithItsReply) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({});
  ClientTransaction tx(f.message, server);
  tx.on_mail_reply(reply({"250 ok"}));
  tx.on_rcpt_reply(0, reply({"250 ok"}));
  tx.on_service_closing(reply({"421 4.4.2 bye"}));
  expect_every(tx.take_outcomes(), Kind::temporary, "4.4.2", 421, "bye");
}

TEST(ClientTransaction, NoReplyKeepsDecidedOutcomes) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({});
  ClientTransaction tx(f.message, server);
  tx.on_mail_reply(reply({"250 ok"}));
  tx.on_rcpt_reply(0, reply({"550 5.1.1 unknown"}));
  tx.on_no_reply("4.4.2", "timeout waiting for the reply to RCPT TO");
  auto o = tx.take_outcomes();
  EXPECT_EQ(o[0].kind, Kind::permanent);
  EXPECT_EQ(o[1].kind, Kind::temporary);
  EXPECT_EQ(o[1].code, 0);
  EXPECT_EQ(o[1].enhanced, "4.4.2");
  EXPECT_EQ(o[1].text, "timeout waiting for the reply to RCPT TO");
}

TEST(ClientTransaction, RecipientsLeftUndecidedAreTemporary) {
  Fixture f;
  const smtp::EhloInfo server = ehlo({});
  ClientTransaction tx(f.message, server);
  expect_every(tx.take_outcomes(), Kind::temporary, "4.4.2", 0);
}

TEST(ReplyMeaning, TextIsOneLineWithoutTheEnhancedCode) {
  EXPECT_EQ(text_of(reply({"250-2.1.0 first", "250 second"})), "first second");
  EXPECT_EQ(text_of(reply({"550-5.1.1 first", "550-5.1.1", "550 5.1.1 second"})), "first second");
  EXPECT_EQ(text_of(reply({"550 plain text"})), "plain text");
  EXPECT_EQ(text_of(reply({"550"})), "");
  EXPECT_EQ(text_of(reply({"550 5.1.1"})), "");
}

TEST(ReplyMeaning, EnhancedCodeMatchesTheReplyClass) {
  EXPECT_EQ(enhanced_code_of(reply({"550 5.1.1 x"})), "5.1.1");
  EXPECT_EQ(enhanced_code_of(reply({"550 x"})), "5.0.0");
  EXPECT_EQ(enhanced_code_of(reply({"450 5.1.1 mismatched"})), "4.0.0");
  EXPECT_EQ(enhanced_code_of(reply({"250 ok"})), "2.0.0");
  EXPECT_EQ(enhanced_code_of(reply({"354 go"})), "4.5.0");
}

}  // namespace
}  // namespace tern::delivery
