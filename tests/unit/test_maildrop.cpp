#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "mta/pop3/maildrop.h"

namespace tern::pop3 {
namespace {

namespace fs = std::filesystem;

class MaildropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tern-maildrop-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ + "/alice/new");
    fs::create_directories(root_ + "/alice/cur");
    fs::create_directories(root_ + "/alice/tmp");
  }
  void TearDown() override { fs::remove_all(root_); }

  void put(const std::string& relative, const std::string& content) {
    std::ofstream out(root_ + "/alice/" + relative, std::ios::binary);
    out << content;
  }
  Maildrop open() {
    auto drop = Maildrop::open(root_, "alice");
    EXPECT_TRUE(drop.ok()) << (drop.ok() ? "" : drop.error());
    return std::move(drop.value());
  }
  size_t files_in(const std::string& sub) {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(root_ + "/alice/" + sub)) ++n;
    return n;
  }

  std::string root_;
};

// What a client that receives `wire` (after +OK) would store: unstuffed,
// without the terminating line.
std::string unstuff(const std::string& wire) {
  EXPECT_GE(wire.size(), 3u);
  EXPECT_EQ(wire.substr(wire.size() - 3), ".\r\n");
  std::string body = wire.substr(0, wire.size() - 3);
  std::string out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\r\n", pos);
    std::string line = body.substr(pos, end - pos);
    if (!line.empty() && line[0] == '.') line.erase(0, 1);
    out += line + "\r\n";
    pos = end + 2;
  }
  return out;
}

TEST_F(MaildropTest, MissingMaildirIsEmpty) {
  auto drop = Maildrop::open(root_, "nobody");
  ASSERT_TRUE(drop.ok());
  EXPECT_EQ(drop->size(), 0u);
  EXPECT_EQ(drop->count(), 0u);
  EXPECT_EQ(drop->total_octets(), 0u);
  EXPECT_FALSE(drop->octets(1).has_value());
  auto committed = drop->commit();
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed.value(), 0u);
}

TEST_F(MaildropTest, RejectsPathNames) {
  EXPECT_FALSE(Maildrop::open(root_, "..").ok());
  EXPECT_FALSE(Maildrop::open(root_, ".").ok());
  EXPECT_FALSE(Maildrop::open(root_, "a/b").ok());
  EXPECT_FALSE(Maildrop::open(root_, "").ok());
}

TEST_F(MaildropTest, MovesNewToCurAndOrdersByName) {
  put("new/1700000002.M2P1.host", "Subject: b\n\nsecond\n");
  put("cur/1700000001.M1P1.host:2,S", "Subject: a\n\nfirst\n");
  put("new/1700000003.M3P1.host", "Subject: c\n\nthird\n");
  put("new/.hidden", "not a message\n");
  Maildrop drop = open();
  ASSERT_EQ(drop.size(), 3u);
  EXPECT_EQ(drop.uid(1), "1700000001.M1P1.host");
  EXPECT_EQ(drop.uid(2), "1700000002.M2P1.host");
  EXPECT_EQ(drop.uid(3), "1700000003.M3P1.host");
  EXPECT_TRUE(fs::exists(root_ + "/alice/cur/1700000002.M2P1.host:2,"));
  EXPECT_TRUE(fs::exists(root_ + "/alice/cur/1700000003.M3P1.host:2,"));
  EXPECT_TRUE(fs::exists(root_ + "/alice/cur/1700000001.M1P1.host:2,S"));
  EXPECT_EQ(files_in("new"), 1u);  // only .hidden
  auto first = drop.retrieve(1, std::nullopt);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.value(), "Subject: a\r\n\r\nfirst\r\n.\r\n");
}

TEST_F(MaildropTest, DigitRunsOrderNumerically) {
  // The delivery agent's names: <sec>.M<usec>P<pid>Q<seq>.<host>, unpadded.
  put("new/1700000000.M40P7Q2.host", "b\n");
  put("new/1700000000.M5P7Q1.host", "a\n");
  put("new/999999999.M1P7Q1.host", "oldest\n");
  put("new/1700000000.M40P7Q10.host", "c\n");
  Maildrop drop = open();
  ASSERT_EQ(drop.size(), 4u);
  EXPECT_EQ(drop.uid(1), "999999999.M1P7Q1.host");
  EXPECT_EQ(drop.uid(2), "1700000000.M5P7Q1.host");
  EXPECT_EQ(drop.uid(3), "1700000000.M40P7Q2.host");
  EXPECT_EQ(drop.uid(4), "1700000000.M40P7Q10.host");
}

TEST_F(MaildropTest, SizesAreExactCrlfOctets) {
  const std::string a = "Subject: x\n\nline one\n.dot\n\nlast\n";
  const std::string b = "no final newline";
  const std::string c = "Subject: crlf\r\n\r\nalready crlf\r\nmixed\n";
  put("new/1.a.host", a);
  put("new/2.b.host", b);
  put("new/3.c.host", c);
  put("new/4.d.host", "");
  Maildrop drop = open();
  ASSERT_EQ(drop.size(), 4u);
  // file octets + one per LF (not already after CR) + CRLF for an unterminated last line
  EXPECT_EQ(drop.octets(1), a.size() + 6);
  EXPECT_EQ(drop.octets(2), b.size() + 2);
  EXPECT_EQ(drop.octets(3), c.size() + 1);
  EXPECT_EQ(drop.octets(4), 0u);
  EXPECT_EQ(drop.total_octets(), a.size() + 6 + b.size() + 2 + c.size() + 1);
  for (size_t n = 1; n <= 4; ++n) {
    auto wire = drop.retrieve(n, std::nullopt);
    ASSERT_TRUE(wire.ok());
    EXPECT_EQ(unstuff(wire.value()).size(), *drop.octets(n)) << n;
  }
}

TEST_F(MaildropTest, ByteStuffing) {
  put("new/1.a.host", "Subject: dots\n\n.\n..two\n.x\nno dot\n");
  Maildrop drop = open();
  auto wire = drop.retrieve(1, std::nullopt);
  ASSERT_TRUE(wire.ok());
  EXPECT_EQ(wire.value(), "Subject: dots\r\n\r\n..\r\n...two\r\n..x\r\nno dot\r\n.\r\n");
}

TEST_F(MaildropTest, Top) {
  put("new/1.a.host", "From: a\nSubject: s\n\nb1\n.b2\nb3\n");
  put("new/2.b.host", "From: only headers\n");
  Maildrop drop = open();
  auto top0 = drop.retrieve(1, 0);
  ASSERT_TRUE(top0.ok());
  EXPECT_EQ(top0.value(), "From: a\r\nSubject: s\r\n\r\n.\r\n");
  auto top2 = drop.retrieve(1, 2);
  ASSERT_TRUE(top2.ok());
  EXPECT_EQ(top2.value(), "From: a\r\nSubject: s\r\n\r\nb1\r\n..b2\r\n.\r\n");
  auto top_all = drop.retrieve(1, 100);
  ASSERT_TRUE(top_all.ok());
  EXPECT_EQ(top_all.value(), drop.retrieve(1, std::nullopt).value());
  auto headers_only = drop.retrieve(2, 0);
  ASSERT_TRUE(headers_only.ok());
  EXPECT_EQ(headers_only.value(), "From: only headers\r\n.\r\n");
}

TEST_F(MaildropTest, UidsStableAcrossOpens) {
  put("new/1700000001.M1.host", "a\n");
  put("new/1700000002.M2.host,S=2", "b\n");
  std::string first_1, first_2;
  {
    Maildrop drop = open();
    first_1 = drop.uid(1).value();
    first_2 = drop.uid(2).value();
  }
  Maildrop again = open();  // now both in cur/ with ":2,"
  EXPECT_EQ(again.uid(1), first_1);
  EXPECT_EQ(again.uid(2), first_2);
  EXPECT_EQ(first_2, "1700000002.M2.host,S=2");
}

TEST_F(MaildropTest, UidSanitizedAndBounded) {
  EXPECT_EQ(Maildrop::uid_for_name("123.abc.host:2,S"), "123.abc.host");
  const std::string long_name(100, 'x');
  const std::string uid = Maildrop::uid_for_name(long_name);
  EXPECT_EQ(uid.size(), 70u);
  EXPECT_EQ(uid, Maildrop::uid_for_name(long_name + ":2,"));
  EXPECT_NE(uid, Maildrop::uid_for_name(std::string(99, 'x') + "y"));
  const std::string odd = Maildrop::uid_for_name("a b\x7f\xc3\xa9");
  EXPECT_LE(odd.size(), 70u);
  for (unsigned char ch : odd) EXPECT_TRUE(ch >= 0x21 && ch <= 0x7E);
  EXPECT_NE(odd, Maildrop::uid_for_name("a_b\x7f\xc3\xa9"));
  EXPECT_FALSE(Maildrop::uid_for_name(":2,").empty());
}

TEST_F(MaildropTest, DeleteAndReset) {
  put("new/1.a.host", "one\n");
  put("new/2.b.host", "two!\n");
  Maildrop drop = open();
  EXPECT_EQ(drop.count(), 2u);
  EXPECT_TRUE(drop.mark_deleted(1));
  EXPECT_FALSE(drop.mark_deleted(1));  // already deleted
  EXPECT_FALSE(drop.mark_deleted(3));
  EXPECT_FALSE(drop.mark_deleted(0));
  EXPECT_EQ(drop.count(), 1u);
  EXPECT_EQ(drop.size(), 2u);  // numbers stay
  EXPECT_EQ(drop.total_octets(), 6u);
  EXPECT_FALSE(drop.octets(1).has_value());
  EXPECT_FALSE(drop.uid(1).has_value());
  EXPECT_FALSE(drop.retrieve(1, std::nullopt).ok());
  EXPECT_EQ(drop.uid(2), "2.b.host");
  drop.reset();
  EXPECT_EQ(drop.count(), 2u);
  EXPECT_EQ(drop.octets(1), 5u);
}

TEST_F(MaildropTest, CommitRemovesDeletedFiles) {
  put("new/1.a.host", "one\n");
  put("new/2.b.host", "two\n");
  put("new/3.c.host", "three\n");
  {
    Maildrop drop = open();
    EXPECT_TRUE(drop.mark_deleted(1));
    EXPECT_TRUE(drop.mark_deleted(3));
    auto removed = drop.commit();
    ASSERT_TRUE(removed.ok());
    EXPECT_EQ(removed.value(), 2u);
  }
  EXPECT_EQ(files_in("cur"), 1u);
  Maildrop again = open();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again.uid(1), "2.b.host");
}

TEST_F(MaildropTest, NoDeletionWithoutCommit) {
  put("new/1.a.host", "one\n");
  {
    Maildrop drop = open();
    EXPECT_TRUE(drop.mark_deleted(1));
  }
  EXPECT_EQ(open().count(), 1u);
}

TEST_F(MaildropTest, LaterDeliveryNotSeenUntilNextOpen) {
  put("new/1.a.host", "one\n");
  Maildrop drop = open();
  put("new/2.b.host", "two\n");
  EXPECT_EQ(drop.size(), 1u);
  EXPECT_EQ(drop.count(), 1u);
  EXPECT_FALSE(drop.octets(2).has_value());
  Maildrop next = open();
  EXPECT_EQ(next.count(), 2u);
}

TEST_F(MaildropTest, MessageGoneAfterOpen) {
  put("new/1.a.host", "one\n");
  Maildrop drop = open();
  fs::remove(root_ + "/alice/cur/1.a.host:2,");
  EXPECT_FALSE(drop.retrieve(1, std::nullopt).ok());
  EXPECT_TRUE(drop.mark_deleted(1));
  auto removed = drop.commit();
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed.value(), 1u);
}

TEST_F(MaildropTest, CreatesCurWhenMissing) {
  fs::remove_all(root_ + "/alice/cur");
  put("new/1.a.host", "one\n");
  Maildrop drop = open();
  EXPECT_EQ(drop.count(), 1u);
  EXPECT_TRUE(fs::exists(root_ + "/alice/cur/1.a.host:2,"));
}

}  // namespace
}  // namespace tern::pop3
