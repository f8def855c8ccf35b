#include "mta/delivery/flush_target.h"

#include <gtest/gtest.h>

namespace tern::delivery {
namespace {

queue::Envelope waiting(std::vector<std::string> rcpts, queue::QueueName q = queue::QueueName::retry1) {
  queue::Envelope env;
  env.id = "QID1";
  env.queue = q;
  for (auto& address : rcpts) {
    queue::Recipient r;
    r.address = address;
    env.recipients.push_back(std::move(r));
  }
  return env;
}

TEST(FlushTarget, IdOrDomainOfAPendingRecipient) {
  auto env = waiting({"a@one.test", "b@Two.TEST"});
  EXPECT_TRUE(flush_matches(env, "QID1"));
  EXPECT_TRUE(flush_matches(env, "two.test"));
  EXPECT_FALSE(flush_matches(env, "three.test"));
  env.recipients[1].state = queue::RecipientState::delivered;
  EXPECT_FALSE(flush_matches(env, "two.test"));
}

TEST(FlushTarget, AtDomainIncludesSubdomainsOnly) {
  auto env = waiting({"a@mail.example.test"});
  EXPECT_FALSE(flush_matches(env, "example.test"));
  EXPECT_TRUE(flush_matches(env, "@example.test"));
  EXPECT_FALSE(flush_matches(waiting({"a@badexample.test"}), "@example.test"));
  EXPECT_TRUE(flush_matches(waiting({"a@example.test"}), "@example.test"));
}

TEST(FlushTarget, OnlyWaitingQueues) {
  for (auto q : {queue::QueueName::incoming, queue::QueueName::retry1, queue::QueueName::retry2})
    EXPECT_TRUE(flush_matches(waiting({"a@x.test"}, q), "x.test"));
  for (auto q : {queue::QueueName::active, queue::QueueName::hold, queue::QueueName::quarantine, queue::QueueName::busy})
    EXPECT_FALSE(flush_matches(waiting({"a@x.test"}, q), "x.test"));
  EXPECT_FALSE(flush_matches(waiting({"a@x.test"}), ""));
  EXPECT_FALSE(flush_matches(waiting({"a@x.test"}), "@"));
}

}  // namespace
}  // namespace tern::delivery
