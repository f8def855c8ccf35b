#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "queue/envelope.h"

namespace tern::queue {
namespace {

Envelope full_envelope() {
  Envelope env;
  env.id = "0ABCDEFGHJK12345";
  env.sender = "sender@example.org";
  env.size_param = std::numeric_limits<uint64_t>::max();
  env.body_type = "8BITMIME";
  env.smtputf8 = true;
  env.ret = "HDRS";
  env.envid = "env+id\x01\xff";
  env.recipients = {
      {"r\xc3\xa9sum\xc3\xa9@\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95", notify_success | notify_failure,
       "rfc822;a@b.c", RecipientState::pending, ""},
      {"b@example.net", notify_never, "", RecipientState::delivered, ""},
      {"c@example.net", notify_delay, "utf-8;c@x", RecipientState::failed,
       std::string("550 5.1.1 no\0such\xff user", 24)},
  };
  env.arrival_us = 1'700'000'000'123'456;
  env.client_ip = "2001:db8::1";
  env.client_helo = "mail.example.org";
  env.protocol = "ESMTPSA";
  env.message_id = "<abc@example.org>";
  env.body_size = 5'000'000'000;
  env.body_chunks = std::numeric_limits<uint32_t>::max();
  env.queue = QueueName::retry2;
  env.next_attempt_us = std::numeric_limits<int64_t>::min();
  env.attempts = std::numeric_limits<uint32_t>::max();
  env.last_error = std::string("\0\x01\x02 binary", 10);
  env.recipients[2].status = "5.1.1";
  env.recipients[2].remote_mta = "mx.example.net";
  env.recipients[2].diagnostic = "550 5.1.1 no such user";
  env.recipients[2].last_attempt_us = -1;
  env.recipients[2].delay_notified_us = std::numeric_limits<int64_t>::max();
  env.origin = Origin::postmaster_notice;
  return env;
}

TEST(QueueNameTest, NamesRoundTrip) {
  for (uint8_t v = 1; v <= 7; ++v) {
    auto q = static_cast<QueueName>(v);
    std::string_view name = to_string(q);
    EXPECT_NE(name, "unknown");
    EXPECT_EQ(parse_queue_name(name), q) << name;
  }
  EXPECT_EQ(to_string(QueueName::incoming), "incoming");
  EXPECT_EQ(to_string(QueueName::quarantine), "quarantine");
  EXPECT_EQ(parse_queue_name("HOLD"), QueueName::hold);
  EXPECT_EQ(parse_queue_name("Retry1"), QueueName::retry1);
  EXPECT_EQ(parse_queue_name(""), std::nullopt);
  EXPECT_EQ(parse_queue_name("holds"), std::nullopt);
  EXPECT_EQ(parse_queue_name("retry3"), std::nullopt);
  EXPECT_EQ(to_string(static_cast<QueueName>(0)), "unknown");
  EXPECT_EQ(to_string(static_cast<QueueName>(8)), "unknown");
}

// Spools written before the DSN fields existed stay readable.
TEST(EnvelopeCodecTest, ReadsVersionOneRecords) {
  std::string v1("\x01", 1);
  v1 += std::string("\x00\x00\x00\x00\x00\x00\x00", 7);  // id .. envid
  v1 += std::string("\x01\x01" "a\x00\x00\x02\x00", 7);   // one recipient "a", failed
  v1 += std::string("\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00", 11);  // arrival .. last_error, queue retry1
  std::optional<Envelope> env = decode_envelope(v1);
  ASSERT_TRUE(env.has_value());
  ASSERT_EQ(env->recipients.size(), 1u);
  EXPECT_EQ(env->recipients[0].address, "a");
  EXPECT_EQ(env->recipients[0].state, RecipientState::failed);
  EXPECT_EQ(env->recipients[0].status, "");
  EXPECT_EQ(env->queue, QueueName::retry1);
  EXPECT_EQ(env->origin, Origin::received);
  // Re-encoded, it is a version 2 record with the same content.
  const std::string v2 = encode(*env);
  EXPECT_EQ(v2[0], '\x02');
  EXPECT_EQ(decode_envelope(v2), env);
}

TEST(EnvelopeCodecTest, RefusesAnUnknownOrigin) {
  std::string bytes = encode(full_envelope());
  bytes.back() = '\x03';
  EXPECT_EQ(decode_envelope(bytes), std::nullopt);
}

TEST(EnvelopeCodecTest, EveryFieldRoundTrips) {
  Envelope env = full_envelope();
  std::optional<Envelope> back = decode_envelope(encode(env));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, env);
  // Field by field too, so a failure names the field.
  EXPECT_EQ(back->id, env.id);
  EXPECT_EQ(back->size_param, env.size_param);
  EXPECT_EQ(back->envid, env.envid);
  ASSERT_EQ(back->recipients.size(), 3u);
  EXPECT_EQ(back->recipients[0].address, env.recipients[0].address);
  EXPECT_EQ(back->recipients[2].last_error, env.recipients[2].last_error);
  EXPECT_EQ(back->recipients[1].state, RecipientState::delivered);
  EXPECT_EQ(back->recipients[0].notify, notify_success | notify_failure);
  EXPECT_EQ(back->body_size, env.body_size);
  EXPECT_EQ(back->body_chunks, env.body_chunks);
  EXPECT_EQ(back->queue, QueueName::retry2);
  EXPECT_EQ(back->next_attempt_us, env.next_attempt_us);
  EXPECT_EQ(back->last_error, env.last_error);
}

TEST(EnvelopeCodecTest, DefaultAndEmptyEnvelopeRoundTrips) {
  Envelope env;
  std::optional<Envelope> back = decode_envelope(encode(env));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, env);
  EXPECT_TRUE(back->sender.empty());
  EXPECT_TRUE(back->recipients.empty());
}

TEST(EnvelopeCodecTest, EachSignedAndUnsignedExtremeRoundTrips) {
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{1}, std::numeric_limits<int64_t>::max(),
                    std::numeric_limits<int64_t>::min(), int64_t{-1'700'000'000'000'000}}) {
    Envelope env;
    env.arrival_us = v;
    env.next_attempt_us = -(v / 2);
    env.size_param = static_cast<uint64_t>(v);
    std::optional<Envelope> back = decode_envelope(encode(env));
    ASSERT_TRUE(back.has_value()) << v;
    EXPECT_EQ(*back, env) << v;
  }
}

TEST(EnvelopeCodecTest, ManyRecipientsAndLongStringsRoundTrip) {
  Envelope env;
  env.sender = std::string(100'000, 'x');
  for (int i = 0; i < 1000; ++i) {
    env.recipients.push_back({"user" + std::to_string(i) + "@example.com", static_cast<uint8_t>(i % 16), "", {}, ""});
  }
  std::optional<Envelope> back = decode_envelope(encode(env));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, env);
}

TEST(EnvelopeCodecTest, EveryTruncationIsRejected) {
  std::string bytes = encode(full_envelope());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_envelope(std::string_view(bytes).substr(0, n)).has_value()) << "length " << n;
  }
}

TEST(EnvelopeCodecTest, TrailingBytesAreRejected) {
  std::string bytes = encode(full_envelope());
  EXPECT_FALSE(decode_envelope(bytes + '\0').has_value());
}

TEST(EnvelopeCodecTest, UnknownVersionIsRejected) {
  std::string bytes = encode(full_envelope());
  bytes[0] = 3;
  EXPECT_FALSE(decode_envelope(bytes).has_value());
}

TEST(EnvelopeCodecTest, InvalidEnumValuesAreRejected) {
  Envelope env;
  env.queue = static_cast<QueueName>(9);
  EXPECT_FALSE(decode_envelope(encode(env)).has_value());
  env.queue = QueueName::incoming;
  env.recipients.push_back({"a@b", 0, "", static_cast<RecipientState>(3), ""});
  EXPECT_FALSE(decode_envelope(encode(env)).has_value());
  env.recipients[0].state = RecipientState::pending;
  env.recipients[0].notify = 16;
  EXPECT_FALSE(decode_envelope(encode(env)).has_value());
}

TEST(EnvelopeCodecTest, HugeRecipientCountIsRejectedWithoutAllocating) {
  // version, then seven empty/zero fields, then a recipient count of 2^63.
  std::string bytes("\x01\x00\x00\x00\x00\x00\x00\x00", 8);
  bytes += std::string("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 10);
  EXPECT_FALSE(decode_envelope(bytes).has_value());
}

TEST(EnvelopeCodecTest, OverlongVarintIsRejected) {
  Envelope env;
  std::string bytes = encode(env);
  // Byte 3 is size_param (0). Replace it with a two-byte encoding of 0.
  ASSERT_EQ(bytes[3], '\0');
  std::string overlong = bytes.substr(0, 3) + std::string("\x80\x00", 2) + bytes.substr(4);
  EXPECT_FALSE(decode_envelope(overlong).has_value());
}

TEST(EnvelopeCodecTest, RandomGarbageNeverCrashes) {
  std::mt19937_64 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<size_t> length(0, 300);
  size_t accepted = 0;
  for (int i = 0; i < 100'000; ++i) {
    std::string garbage(length(rng), '\0');
    for (char& c : garbage) c = static_cast<char>(byte(rng));
    if (i % 2 == 0 && !garbage.empty()) garbage[0] = 1;  // get past the version check half the time
    std::optional<Envelope> env = decode_envelope(garbage);
    if (env) {
      ++accepted;
      // The decoder is strict, so whatever it accepts is a canonical encoding.
      EXPECT_EQ(encode(*env), garbage);
    }
  }
  EXPECT_LT(accepted, 100u);
}

TEST(EnvelopeCodecTest, MutatedEncodingsNeverCrashAndStayCanonical) {
  std::string valid = encode(full_envelope());
  std::mt19937_64 rng(777);
  std::uniform_int_distribution<size_t> position(0, valid.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 50'000; ++i) {
    std::string mutated = valid;
    int flips = 1 + i % 3;
    for (int f = 0; f < flips; ++f) mutated[position(rng)] = static_cast<char>(byte(rng));
    if (std::optional<Envelope> env = decode_envelope(mutated)) {
      EXPECT_EQ(encode(*env), mutated);
    }
  }
}

}  // namespace
}  // namespace tern::queue
