#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "mta/policy/user_directory.h"

using tern::policy::hash_password;
using tern::policy::UserDirectory;

namespace {

// Real hashes of "secret" (yescrypt and SHA-512 crypt).
std::string yes_secret() {
  static const std::string h = *hash_password("secret", "yescrypt");
  return h;
}
std::string sha_secret() {
  static const std::string h = *hash_password("secret", "sha512");
  return h;
}

constexpr char kHash[] = "$y$j9T$cPlkrmIe/aUT1edyF7Gr2.$5GY6ZNH3nMScxMrB0S6AWkgHYey5CGwuad2QhAdx4EB";

TEST(UserDirectory, ParsesUsersAliasesAndComments) {
  const std::string text = std::string("# users\n\n") + "user alice " + kHash +
                           " alice@example.org Alice.Smith@Example.ORG\n" + "user bob ! \n" +
                           "alias sales@example.org alice bob carol@elsewhere.test\n";
  auto d = UserDirectory::parse(text);
  ASSERT_TRUE(d.ok()) << d.error();
  ASSERT_NE(d->find("alice"), nullptr);
  EXPECT_EQ(d->find("alice")->hash, kHash);
  EXPECT_EQ(d->find("alice")->addresses.size(), 2u);
  EXPECT_FALSE(d->find("alice")->locked());
  ASSERT_NE(d->find("bob"), nullptr);
  EXPECT_TRUE(d->find("bob")->locked());
  EXPECT_TRUE(d->find("bob")->addresses.empty());
  EXPECT_EQ(d->find("carol"), nullptr);
  EXPECT_EQ(d->find("ALICE"), nullptr);
  ASSERT_EQ(d->users().size(), 2u);
  EXPECT_EQ(d->users()[0]->name, "alice");
  EXPECT_EQ(d->users()[1]->name, "bob");
  EXPECT_EQ(d->alias_targets("SALES@example.org"), (std::vector<std::string>{"alice", "bob", "carol@elsewhere.test"}));
  EXPECT_TRUE(d->alias_targets("nobody@example.org").empty());
}

TEST(UserDirectory, Owns) {
  const std::string text = std::string("user alice ") + kHash + " alice@example.org Alice.Smith@Example.ORG\n" +
                           "user bob " + kHash + "\n" + "alias sales@example.org alice\n";
  auto d = UserDirectory::parse(text);
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_TRUE(d->owns("alice", "alice@example.org"));
  EXPECT_TRUE(d->owns("alice", "ALICE@EXAMPLE.ORG"));
  EXPECT_TRUE(d->owns("alice", "alice.smith@example.org"));
  EXPECT_TRUE(d->owns("alice", "Sales@Example.org"));
  EXPECT_FALSE(d->owns("bob", "alice@example.org"));
  EXPECT_FALSE(d->owns("bob", "sales@example.org"));
  EXPECT_FALSE(d->owns("nobody", "alice@example.org"));
  EXPECT_FALSE(d->owns("alice", "alice@example.net"));
}

void expect_error(std::string_view text, std::string_view fragment) {
  auto d = UserDirectory::parse(text);
  ASSERT_FALSE(d.ok()) << text;
  EXPECT_NE(d.error().find(fragment), std::string::npos) << d.error();
}

TEST(UserDirectory, ErrorsNameTheLine) {
  const std::string ok = std::string("user alice ") + kHash + "\n";
  expect_error("# c\n\nuser\n", "line 3: expected: user NAME HASH");
  expect_error("user alice\n", "line 1: expected");
  expect_error(ok + ok, "line 2: user alice defined twice");
  expect_error("user Alice !\n", "line 1: invalid user name");
  expect_error("user a/b !\n", "line 1: invalid user name");
  expect_error("user " + std::string(65, 'a') + " !\n", "invalid user name");
  expect_error("user alice $1$abc$def\n", "line 1: user alice: the hash");
  expect_error("user alice secret\n", "the hash");
  expect_error("user alice $y$bad\"char\n", "the hash");
  expect_error("user alice ! alice\n", "invalid address");
  expect_error("user alice ! alice@\n", "invalid address");
  expect_error("user alice ! a@x.test A@X.TEST\n", "listed twice");
  expect_error("alias a@x.test\n", "line 1: expected: alias ADDRESS TARGET");
  expect_error("alias nope alice\n", "invalid alias address");
  expect_error("alias a@x.test Alice\n", "invalid target");
  expect_error("alias a@x.test alice\nalias A@X.test bob\n", "line 2: alias A@X.test defined twice");
  expect_error("group staff alice\n", "line 1: unknown entry");
  expect_error("user alice ! \xff@x.test\n", "line 1: not UTF-8");
  expect_error("user alice !\x01\n", "control character");
}

TEST(UserDirectory, EmptyAndWhitespace) {
  auto d = UserDirectory::parse("");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->empty());
  d = UserDirectory::parse("  \t\n# only comments\n   # indented\r\n");
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_TRUE(d->users().empty());
  d = UserDirectory::parse("\tuser\talice\t!\tj\xc3\xb6rg@example.org");  // no final newline, tabs, UTF-8
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_TRUE(d->owns("alice", "j\xc3\xb6rg@example.org"));
}

TEST(UserDirectory, SerializeRoundTripsAndKeepsComments) {
  const std::string text = std::string("# the users\n\n") + "user alice " + kHash + " alice@example.org\n" +
                           "# bob left\n" + "user bob !\n" + "alias sales@example.org alice bob\n";
  auto d = UserDirectory::parse(text);
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_EQ(d->serialize(), text);
  auto again = UserDirectory::parse(d->serialize());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->serialize(), text);

  // Canonical spacing on output.
  auto spaced = UserDirectory::parse("user   carol\t!   c@x.test  \n");
  ASSERT_TRUE(spaced.ok());
  EXPECT_EQ(spaced->serialize(), "user carol ! c@x.test\n");
}

TEST(UserDirectory, Mutators) {
  auto parsed = UserDirectory::parse("# keep me\nuser bob !\n");
  ASSERT_TRUE(parsed.ok());
  UserDirectory d = *parsed;
  ASSERT_TRUE(d.add_user("alice", kHash, {"alice@example.org"}).ok());
  EXPECT_FALSE(d.add_user("alice", kHash, {}).ok());
  EXPECT_FALSE(d.add_user("Alice", kHash, {}).ok());
  EXPECT_FALSE(d.add_user("carol", "plain", {}).ok());
  EXPECT_FALSE(d.add_user("carol", kHash, {"not-an-address"}).ok());
  EXPECT_EQ(d.find("carol"), nullptr);
  EXPECT_EQ(d.serialize(), std::string("# keep me\nuser bob !\nuser alice ") + kHash + " alice@example.org\n");

  ASSERT_TRUE(d.set_hash("bob", kHash).ok());
  EXPECT_FALSE(d.find("bob")->locked());
  EXPECT_FALSE(d.set_hash("nobody", kHash).ok());
  EXPECT_FALSE(d.set_hash("bob", "nope").ok());

  ASSERT_TRUE(d.remove_user("bob").ok());
  EXPECT_FALSE(d.remove_user("bob").ok());
  EXPECT_EQ(d.find("bob"), nullptr);
  EXPECT_EQ(d.serialize(), std::string("# keep me\nuser alice ") + kHash + " alice@example.org\n");
  auto back = UserDirectory::parse(d.serialize());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->serialize(), d.serialize());
}

TEST(UserDirectory, HashPassword) {
  auto y = hash_password("secret");
  ASSERT_TRUE(y.ok()) << y.error();
  EXPECT_EQ(y->rfind("$y$", 0), 0u);
  auto y2 = hash_password("secret", "yescrypt");
  ASSERT_TRUE(y2.ok());
  EXPECT_NE(*y, *y2);  // fresh salt
  auto s = hash_password("secret", "sha512");
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->rfind("$6$", 0), 0u);
  EXPECT_TRUE(tern::policy::valid_user_hash(*y));
  EXPECT_TRUE(tern::policy::valid_user_hash(*s));
  EXPECT_FALSE(hash_password("secret", "md5").ok());
  EXPECT_FALSE(hash_password("", "yescrypt").ok());
  EXPECT_FALSE(hash_password(std::string("a\0b", 3), "yescrypt").ok());
}

TEST(UserDirectory, Verify) {
  const std::string text = "user alice " + yes_secret() + "\nuser bob " + sha_secret() + "\nuser carol !\n";
  auto d = UserDirectory::parse(text);
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_TRUE(d->verify("alice", "secret"));
  EXPECT_TRUE(d->verify("bob", "secret"));
  EXPECT_FALSE(d->verify("alice", "Secret"));
  EXPECT_FALSE(d->verify("alice", "secret "));
  EXPECT_FALSE(d->verify("alice", ""));
  EXPECT_FALSE(d->verify("alice", std::string("secret\0x", 8)));
  EXPECT_FALSE(d->verify("bob", "wrong"));
  EXPECT_FALSE(d->verify("carol", "secret"));
  EXPECT_FALSE(d->verify("carol", ""));
  EXPECT_FALSE(d->verify("nobody", "secret"));
  EXPECT_FALSE(d->verify("ALICE", "secret"));
}

TEST(UserDirectory, SharedAcrossThreads) {
  auto parsed = UserDirectory::parse("user alice " + yes_secret() + " alice@example.org\n");
  ASSERT_TRUE(parsed.ok());
  const std::shared_ptr<const UserDirectory> d = std::make_shared<const UserDirectory>(std::move(*parsed));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      if (d->verify("alice", "secret") && !d->verify("alice", "nope") && d->owns("alice", "ALICE@example.org") &&
          !d->verify(i % 2 ? "nobody" : "alice", "x"))
        ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 4);
}

TEST(UserDirectory, LoadMissingFileIsEmpty) {
  auto d = UserDirectory::load("/nonexistent-dir-tern/users");
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_TRUE(d->empty());
}

TEST(UserDirectory, LoadFile) {
  char dir[] = "/tmp/tern-ud-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/users";
  {
    std::ofstream f(path);
    f << "user alice ! a@x.test\n";
  }
  auto d = UserDirectory::load(path);
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_NE(d->find("alice"), nullptr);
  {
    std::ofstream f(path);
    f << "\nuser alice\n";
  }
  d = UserDirectory::load(path);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().rfind(path + ": line 2: ", 0), 0u) << d.error();
  // A directory cannot be read as the file.
  d = UserDirectory::load(dir);
  EXPECT_FALSE(d.ok());
  unlink(path.c_str());
  rmdir(dir);
}

TEST(UserDirectory, AddressSyntax) {
  using tern::policy::valid_user_address;
  EXPECT_TRUE(valid_user_address("a@b.test"));
  EXPECT_TRUE(valid_user_address("first.last+tag@sub.example.org"));
  EXPECT_FALSE(valid_user_address("a"));
  EXPECT_FALSE(valid_user_address("@b.test"));
  EXPECT_FALSE(valid_user_address("a@"));
  EXPECT_FALSE(valid_user_address("<a@b.test>"));
  EXPECT_FALSE(valid_user_address("postmaster"));
  EXPECT_FALSE(valid_user_address(""));
}

}  // namespace
