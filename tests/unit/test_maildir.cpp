#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mta/local/maildir.h"
#include "mta/text.h"

using tern::local::deliver_to_maildir;
using tern::local::delivered_to_present;
using tern::local::maildir_file_name;
using tern::local::maildir_usage;
using tern::local::MaildirResult;
using tern::local::valid_maildir_user;
namespace fs = std::filesystem;

namespace {

class Maildir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "tern-maildir-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    root_ = tern::concat({dir_, "/mail"});
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::vector<fs::path> files(const std::string& sub, const std::string& user = "alice") const {
    std::vector<fs::path> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(tern::concat({root_, "/", user, "/", sub}), ec))
      out.push_back(e.path());
    return out;
  }

  static std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string dir_;
  std::string root_;
};

constexpr std::string_view kPrefix = "Return-Path: <s@a.test>\r\nDelivered-To: alice@example.org\r\n";
constexpr std::string_view kContent = "Subject: hi\r\n\r\nline one\r\nbare\rcr\r\n";
constexpr std::string_view kStored =
    "Return-Path: <s@a.test>\nDelivered-To: alice@example.org\nSubject: hi\n\nline one\nbare\rcr\n";

TEST_F(Maildir, DeliveryCreatesTheMaildirAndOneFileInNew) {
  MaildirResult r = deliver_to_maildir(root_, "alice", kPrefix, kContent, 0, "mx.example.org");
  ASSERT_EQ(r.kind, MaildirResult::Kind::delivered) << r.error;
  EXPECT_TRUE(r.error.empty());
  for (const char* sub : {"", "/tmp", "/new", "/cur"}) {
    struct stat st;
    ASSERT_EQ(::stat(tern::concat({root_, "/alice", sub}).c_str(), &st), 0) << sub;
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u) << sub;
  }
  auto in_new = files("new");
  ASSERT_EQ(in_new.size(), 1u);
  EXPECT_EQ(in_new[0].string(), r.path);
  EXPECT_TRUE(files("tmp").empty());
  EXPECT_TRUE(files("cur").empty());
  EXPECT_EQ(read(in_new[0]), kStored);
  const std::string name = in_new[0].filename().string();
  EXPECT_TRUE(name.ends_with(".mx.example.org")) << name;
  EXPECT_NE(name.find(".M"), std::string::npos);
  EXPECT_NE(name.find(tern::concat({"P", std::to_string(::getpid()), "Q"})), std::string::npos) << name;
  struct stat st;
  ASSERT_EQ(::stat(r.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(Maildir, CrlfSplitBetweenPrefixAndContentBecomesOneLf) {
  MaildirResult r = deliver_to_maildir(root_, "alice", "X-A: 1\r", "\nbody\r", 0, "h");
  ASSERT_EQ(r.kind, MaildirResult::Kind::delivered) << r.error;
  EXPECT_EQ(read(r.path), "X-A: 1\nbody\r");
}

TEST_F(Maildir, TwoDeliveriesGetDistinctNames) {
  std::set<std::string> names;
  for (int i = 0; i < 5; ++i) {
    MaildirResult r = deliver_to_maildir(root_, "alice", "", "a\r\n", 0, "h");
    ASSERT_EQ(r.kind, MaildirResult::Kind::delivered) << r.error;
    names.insert(r.path);
  }
  EXPECT_EQ(names.size(), 5u);
  EXPECT_EQ(files("new").size(), 5u);
}

TEST_F(Maildir, HostnameSlashAndColonAreReplaced) {
  MaildirResult r = deliver_to_maildir(root_, "alice", "", "a\r\n", 0, "a/b:c");
  ASSERT_EQ(r.kind, MaildirResult::Kind::delivered) << r.error;
  EXPECT_TRUE(r.path.ends_with(".a_b_c")) << r.path;
  EXPECT_EQ(maildir_file_name(1795398000000123, 42, 7, "x/y:z"), "1795398000.M123P42Q7.x_y_z");
}

TEST_F(Maildir, QuotaAllowsExactlyTheLimit) {
  // Stored size: 10 bytes ("123456789\n").
  ASSERT_EQ(deliver_to_maildir(root_, "alice", "", "123456789\r\n", 0, "h").kind, MaildirResult::Kind::delivered);
  EXPECT_EQ(maildir_usage(root_, "alice"), 10u);
  // 10 used + 10 = 20: exactly at the quota.
  MaildirResult at = deliver_to_maildir(root_, "alice", "", "123456789\r\n", 20, "h");
  ASSERT_EQ(at.kind, MaildirResult::Kind::delivered) << at.error;
  EXPECT_EQ(maildir_usage(root_, "alice"), 20u);
  // One more byte would exceed it: nothing written.
  MaildirResult over = deliver_to_maildir(root_, "alice", "", "1\r\n", 21, "h");
  EXPECT_EQ(over.kind, MaildirResult::Kind::over_quota);
  EXPECT_FALSE(over.error.empty());
  EXPECT_TRUE(over.path.empty());
  EXPECT_EQ(files("new").size(), 2u);
  EXPECT_TRUE(files("tmp").empty());
  // Quota 0 is unlimited.
  EXPECT_EQ(deliver_to_maildir(root_, "alice", "", "1\r\n", 0, "h").kind, MaildirResult::Kind::delivered);
}

TEST_F(Maildir, QuotaCountsNewAndCur) {
  ASSERT_EQ(deliver_to_maildir(root_, "alice", "", "12345\r\n", 0, "h").kind, MaildirResult::Kind::delivered);
  std::ofstream(tern::concat({root_, "/alice/cur/seen:2,S"})) << "0123456789";
  std::ofstream(tern::concat({root_, "/alice/tmp/partial"})) << "ignored ignored";
  EXPECT_EQ(maildir_usage(root_, "alice"), 16u);
  EXPECT_EQ(deliver_to_maildir(root_, "alice", "", "1234\r\n", 20, "h").kind, MaildirResult::Kind::over_quota);
  EXPECT_EQ(deliver_to_maildir(root_, "alice", "", "123\r\n", 20, "h").kind, MaildirResult::Kind::delivered);
}

TEST_F(Maildir, QuotaCountsThePrefixHeadersAndTheLfSize) {
  // "X: y\n" (5) + "ab\n" (3) = 8 bytes stored.
  EXPECT_EQ(deliver_to_maildir(root_, "alice", "X: y\r\n", "ab\r\n", 7, "h").kind, MaildirResult::Kind::over_quota);
  EXPECT_EQ(deliver_to_maildir(root_, "alice", "X: y\r\n", "ab\r\n", 8, "h").kind, MaildirResult::Kind::delivered);
  EXPECT_EQ(maildir_usage(root_, "alice"), 8u);
}

TEST_F(Maildir, UsageOfAMissingMaildirIsZero) {
  EXPECT_EQ(maildir_usage(root_, "nobody"), 0u);
  EXPECT_EQ(maildir_usage(root_, "../etc"), 0u);
}

TEST_F(Maildir, BadUserNamesAreRefused) {
  for (const char* user : {"", ".", "..", ".hidden", "a/b", "../alice", "Alice", "al ice", "a@b", "/abs"}) {
    MaildirResult r = deliver_to_maildir(root_, user, "", "x\r\n", 0, "h");
    EXPECT_EQ(r.kind, MaildirResult::Kind::failed) << user;
    EXPECT_FALSE(r.error.empty()) << user;
    EXPECT_FALSE(valid_maildir_user(user)) << user;
  }
  EXPECT_FALSE(valid_maildir_user(std::string(65, 'a')));
  EXPECT_TRUE(valid_maildir_user(std::string(64, 'a')));
  EXPECT_TRUE(valid_maildir_user("a.b_c-9"));
  EXPECT_FALSE(fs::exists(root_));  // nothing created
}

TEST_F(Maildir, UnusableRootFails) {
  // A file where the root should be: fails even for root (uid 0).
  std::ofstream(tern::concat({dir_, "/file"})) << "x";
  MaildirResult r = deliver_to_maildir(tern::concat({dir_, "/file"}), "alice", "", "x\r\n", 0, "h");
  EXPECT_EQ(r.kind, MaildirResult::Kind::failed);
  EXPECT_NE(r.error.find("Not a directory"), std::string::npos) << r.error;
  EXPECT_TRUE(r.path.empty());

  if (::geteuid() != 0) {  // permissions do not stop root
    ASSERT_EQ(::mkdir(root_.c_str(), 0500), 0);
    MaildirResult denied = deliver_to_maildir(root_, "alice", "", "x\r\n", 0, "h");
    EXPECT_EQ(denied.kind, MaildirResult::Kind::failed);
    EXPECT_NE(denied.error.find("Permission denied"), std::string::npos) << denied.error;
    ::chmod(root_.c_str(), 0700);
  }
}

TEST_F(Maildir, UnwritableTmpRemovesNothingAndFails) {
  // tmp/ replaced by a file: the tmp file cannot be created.
  ASSERT_EQ(deliver_to_maildir(root_, "alice", "", "x\r\n", 0, "h").kind, MaildirResult::Kind::delivered);
  fs::remove_all(tern::concat({root_, "/alice/tmp"}));
  std::ofstream(tern::concat({root_, "/alice/tmp"})) << "not a dir";
  MaildirResult r = deliver_to_maildir(root_, "alice", "", "y\r\n", 0, "h");
  EXPECT_EQ(r.kind, MaildirResult::Kind::failed);
  EXPECT_FALSE(r.error.empty());
  EXPECT_EQ(files("new").size(), 1u);
}

TEST_F(Maildir, CreatesMissingRootComponents) {
  const std::string deep = tern::concat({dir_, "/a/b/c"});
  MaildirResult r = deliver_to_maildir(deep, "bob", "", "x\r\n", 0, "h");
  ASSERT_EQ(r.kind, MaildirResult::Kind::delivered) << r.error;
  EXPECT_TRUE(r.path.starts_with(tern::concat({deep, "/bob/new/"}))) << r.path;
}

TEST(DeliveredTo, FindsTheAddressInTheHeaderSection) {
  EXPECT_TRUE(
      delivered_to_present("Delivered-To: alice@example.org\r\nSubject: x\r\n\r\nbody\r\n", "alice@example.org"));
  EXPECT_TRUE(delivered_to_present("Subject: x\nDELIVERED-TO:Alice@Example.ORG  \n\nbody\n", "alice@example.org"));
  EXPECT_TRUE(delivered_to_present("delivered-to : <alice@example.org>\r\n\r\n", "ALICE@example.org"));
  EXPECT_TRUE(delivered_to_present("Delivered-To: bob@example.org\r\nDelivered-To: alice@example.org\r\n",
                                   "alice@example.org"));  // no body at all
}

TEST(DeliveredTo, UnfoldsFoldedFields) {
  EXPECT_TRUE(
      delivered_to_present("Subject: x\r\nDelivered-To:\r\n alice@example.org\r\nX: y\r\n\r\n", "alice@example.org"));
  EXPECT_TRUE(delivered_to_present("Delivered-To:\r\n\t<alice@example.org>\r\n\r\n", "alice@example.org"));
  // A continuation line belongs to the field before it.
  EXPECT_FALSE(delivered_to_present("Subject: x\r\n Delivered-To: alice@example.org\r\n\r\n", "alice@example.org"));
}

TEST(DeliveredTo, IgnoresOtherAddressesFieldsAndTheBody) {
  EXPECT_FALSE(delivered_to_present("Delivered-To: bob@example.org\r\n\r\n", "alice@example.org"));
  EXPECT_FALSE(delivered_to_present("Delivered-To: alice@example.org.evil\r\n\r\n", "alice@example.org"));
  EXPECT_FALSE(delivered_to_present("X-Delivered-To: alice@example.org\r\n\r\n", "alice@example.org"));
  EXPECT_FALSE(delivered_to_present("Subject: alice@example.org\r\n\r\n", "alice@example.org"));
  EXPECT_FALSE(delivered_to_present("Subject: x\r\n\r\nDelivered-To: alice@example.org\r\n", "alice@example.org"));
  EXPECT_FALSE(delivered_to_present("Subject: x\n\nDelivered-To: alice@example.org\n", "alice@example.org"));
  EXPECT_FALSE(delivered_to_present("\r\nDelivered-To: alice@example.org\r\n", "alice@example.org"));
  EXPECT_FALSE(delivered_to_present("", "alice@example.org"));
}

}  // namespace
