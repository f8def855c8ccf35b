#include "mta/delivery/attempt_outcome.h"

#include <gtest/gtest.h>

namespace tern::delivery {
namespace {

using queue::Envelope;
using queue::QueueName;
using queue::RecipientState;

constexpr int64_t kMinute = 60LL * 1'000'000;

Envelope envelope_with(size_t recipients) {
  Envelope env;
  env.id = "Q1";
  env.arrival_us = 1'000 * kMinute;
  static const char* const kAddresses[] = {"r0@x.test", "r1@x.test", "r2@x.test", "r3@x.test"};
  for (size_t i = 0; i < recipients && i < std::size(kAddresses); ++i) {
    queue::Recipient r;
    r.address = kAddresses[i];
    env.recipients.push_back(std::move(r));
  }
  return env;
}

RecipientOutcome outcome(size_t i, RecipientOutcome::Kind kind, int code, std::string enhanced, std::string text) {
  return RecipientOutcome{i, kind, code, std::move(enhanced), std::move(text)};
}

RetrySettings no_jitter() {
  RetrySettings s;
  s.jitter_percent = 0;
  return s;
}

TEST(AttemptOutcome, DeliveredAndPermanentAreFinalTemporaryStaysPending) {
  Envelope env = envelope_with(3);
  record_outcome(env, outcome(0, RecipientOutcome::Kind::delivered, 250, "2.0.0", "ok"), "mx.test[192.0.2.1]:25", 1);
  record_outcome(env, outcome(1, RecipientOutcome::Kind::permanent, 550, "5.1.1", "no such user"), "mx", 1);
  record_outcome(env, outcome(2, RecipientOutcome::Kind::temporary, 451, "4.3.0", "try later"), "mx", 1);
  EXPECT_EQ(env.recipients[0].state, RecipientState::delivered);
  EXPECT_EQ(env.recipients[0].last_error, "250 2.0.0 ok (mx.test[192.0.2.1]:25)");
  EXPECT_EQ(env.recipients[1].state, RecipientState::failed);
  EXPECT_EQ(env.recipients[1].last_error, "550 5.1.1 no such user (mx)");
  EXPECT_EQ(env.recipients[2].state, RecipientState::pending);
  EXPECT_EQ(env.last_error, "451 4.3.0 try later (mx)");
  EXPECT_TRUE(has_pending(env));
}

TEST(AttemptOutcome, AFinalStateIsNeverUndone) {
  Envelope env = envelope_with(1);
  record_outcome(env, outcome(0, RecipientOutcome::Kind::delivered, 250, "2.0.0", "ok"), "", 1);
  record_outcome(env, outcome(0, RecipientOutcome::Kind::temporary, 421, "4.4.2", "late"), "", 1);
  EXPECT_EQ(env.recipients[0].state, RecipientState::delivered);
  EXPECT_EQ(env.recipients[0].last_error, "250 2.0.0 ok");
}

TEST(AttemptOutcome, OutOfRangeRecipientIsIgnored) {
  Envelope env = envelope_with(1);
  record_outcome(env, outcome(7, RecipientOutcome::Kind::delivered, 250, "2.0.0", "ok"), "", 1);
  EXPECT_EQ(env.recipients[0].state, RecipientState::pending);
}

TEST(AttemptOutcome, SettleFinishesWhenNothingIsPending) {
  Envelope env = envelope_with(2);
  record_outcome(env, outcome(0, RecipientOutcome::Kind::delivered, 250, "2.0.0", "ok"), "", 1);
  record_outcome(env, outcome(1, RecipientOutcome::Kind::permanent, 550, "5.1.1", "no"), "", 1);
  std::mt19937_64 rng(1);
  EXPECT_EQ(settle(env, no_jitter(), env.arrival_us + kMinute, {}, rng).kind, Disposition::Kind::finished);
  EXPECT_EQ(env.attempts, 0u);
}

TEST(AttemptOutcome, TemporaryFailuresClimbTheLadder) {
  Envelope env = envelope_with(1);
  const RetrySettings retry = no_jitter();
  std::mt19937_64 rng(1);
  int64_t now = env.arrival_us;
  for (unsigned attempt = 1; attempt <= retry.first_count; ++attempt) {
    ASSERT_EQ(settle(env, retry, now, {}, rng).kind, Disposition::Kind::retry);
    EXPECT_EQ(env.queue, QueueName::retry1) << attempt;
    EXPECT_EQ(env.next_attempt_us, now + retry.first_interval_us);
    now = env.next_attempt_us;
  }
  ASSERT_EQ(settle(env, retry, now, {}, rng).kind, Disposition::Kind::retry);
  EXPECT_EQ(env.queue, QueueName::retry2);
  EXPECT_EQ(env.next_attempt_us, now + retry.second_interval_us);
  EXPECT_EQ(env.attempts, retry.first_count + 1);
}

TEST(AttemptOutcome, ExpiryFailsWhatIsPendingOnly) {
  Envelope env = envelope_with(2);
  record_outcome(env, outcome(0, RecipientOutcome::Kind::delivered, 250, "2.0.0", "ok"), "", 1);
  record_outcome(env, outcome(1, RecipientOutcome::Kind::temporary, 451, "4.4.1", "down"), "mx", 1);
  std::mt19937_64 rng(1);
  const RetrySettings retry = no_jitter();
  EXPECT_EQ(settle(env, retry, env.arrival_us + retry.max_age_us, {}, rng).kind, Disposition::Kind::expired);
  EXPECT_EQ(env.recipients[0].state, RecipientState::delivered);
  EXPECT_EQ(env.recipients[1].state, RecipientState::failed);
  EXPECT_NE(env.recipients[1].last_error.find("4.4.7"), std::string::npos) << env.recipients[1].last_error;
  EXPECT_NE(env.recipients[1].last_error.find("451 4.4.1 down (mx)"), std::string::npos);
}

TEST(AttemptOutcome, OnlyUntriedRecipientsLeftGoOnHoldWithoutCountingAnAttempt) {
  Envelope env = envelope_with(2);
  record_outcome(env, outcome(0, RecipientOutcome::Kind::delivered, 250, "2.0.0", "ok"), "", 1);
  std::mt19937_64 rng(1);
  EXPECT_EQ(settle(env, no_jitter(), env.arrival_us, {1, held_destination_reason("x.test")}, rng).kind,
            Disposition::Kind::hold);
  EXPECT_EQ(env.queue, QueueName::hold);
  EXPECT_EQ(env.attempts, 0u);
  EXPECT_TRUE(held_for_destination(env));
  env.last_error = "4.3.2 local delivery is not available yet";
  EXPECT_FALSE(held_for_destination(env));
}

TEST(AttemptOutcome, LocalAndRemotePendingRetry) {
  Envelope env = envelope_with(2);
  record_outcome(env, outcome(1, RecipientOutcome::Kind::temporary, 451, "4.4.1", "down"), "", 1);
  std::mt19937_64 rng(1);
  EXPECT_EQ(settle(env, no_jitter(), env.arrival_us, {1, "local"}, rng).kind, Disposition::Kind::retry);
  EXPECT_EQ(env.queue, QueueName::retry1);
}

}  // namespace
}  // namespace tern::delivery
