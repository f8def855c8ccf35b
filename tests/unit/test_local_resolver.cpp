#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mta/local/local_resolver.h"
#include "mta/policy/user_directory.h"
#include "mta/text.h"

using tern::local::LocalResolver;
using tern::local::LocalTarget;
using tern::local::Resolution;
using tern::policy::UserDirectory;
using Kind = LocalTarget::Kind;

namespace {

std::shared_ptr<const UserDirectory> directory(const std::string& text) {
  auto d = UserDirectory::parse(text);
  EXPECT_TRUE(d.ok()) << d.error();
  return std::make_shared<const UserDirectory>(d.ok() ? std::move(*d) : UserDirectory{});
}

LocalTarget mailbox(std::string name) {
  return {Kind::mailbox, std::move(name)};
}
LocalTarget forward(std::string address) {
  return {Kind::address, std::move(address)};
}

const char* const kUsers =
    "user alice ! alice@example.org Alice.Smith@Example.ORG\n"
    "user bob !\n"
    "user carol ! info@other.test\n";

LocalResolver resolver(const std::string& users_text = kUsers, std::string delimiter = "+",
                       std::vector<std::pair<std::string, std::string>> catch_all = {}) {
  return LocalResolver(directory(users_text), {"example.org", "Other.TEST"}, std::move(delimiter),
                       std::move(catch_all));
}

std::vector<LocalTarget> targets_of(const Resolution& r) {
  EXPECT_TRUE(r.known) << r.error;
  return r.targets;
}

TEST(LocalResolver, LocalDomainsAreCaseInsensitive) {
  auto r = resolver();
  EXPECT_TRUE(r.is_local_domain("example.org"));
  EXPECT_TRUE(r.is_local_domain("EXAMPLE.org"));
  EXPECT_TRUE(r.is_local_domain("other.test"));
  EXPECT_FALSE(r.is_local_domain("example.com"));
  EXPECT_FALSE(r.is_local_domain(""));
}

TEST(LocalResolver, RefusesAddressesOutsideTheLocalDomains) {
  auto r = resolver();
  Resolution res = r.resolve("alice@example.com");
  EXPECT_FALSE(res.known);
  EXPECT_TRUE(res.targets.empty());
  EXPECT_FALSE(res.error.empty());
  EXPECT_FALSE(r.resolve("alice").known);
  EXPECT_FALSE(r.resolve("@example.org").known);
}

TEST(LocalResolver, OwnedAddressGoesToItsUser) {
  auto r = resolver();
  EXPECT_EQ(targets_of(r.resolve("alice.smith@example.org")), std::vector{mailbox("alice")});
  EXPECT_EQ(targets_of(r.resolve("ALICE.SMITH@EXAMPLE.ORG")), std::vector{mailbox("alice")});
  // carol owns info@other.test; info@example.org is nobody.
  EXPECT_EQ(targets_of(r.resolve("Info@other.test")), std::vector{mailbox("carol")});
  EXPECT_FALSE(r.resolve("info@example.org").known);
}

TEST(LocalResolver, UserNameAsLocalPartInAnyLocalDomain) {
  auto r = resolver();
  EXPECT_EQ(targets_of(r.resolve("bob@example.org")), std::vector{mailbox("bob")});
  EXPECT_EQ(targets_of(r.resolve("BoB@Other.Test")), std::vector{mailbox("bob")});
  EXPECT_EQ(targets_of(r.resolve("carol@example.org")), std::vector{mailbox("carol")});
}

TEST(LocalResolver, UnknownLocalPartIsNoSuchUser) {
  auto r = resolver();
  Resolution res = r.resolve("nobody@example.org");
  EXPECT_FALSE(res.known);
  EXPECT_EQ(res.error, "no such user");
  EXPECT_TRUE(res.targets.empty());
}

TEST(LocalResolver, NullDirectoryKnowsOnlyThePostmaster) {
  LocalResolver r(nullptr, {"example.org"}, "+", {});
  EXPECT_EQ(r.resolve("nobody@example.org").error, "no such user");
  EXPECT_EQ(targets_of(r.resolve("postmaster@example.org")), std::vector{mailbox("postmaster")});
}

TEST(LocalResolver, PlusTagsFallBackToTheBaseAddress) {
  auto r = resolver();
  EXPECT_EQ(targets_of(r.resolve("bob+lists@example.org")), std::vector{mailbox("bob")});
  EXPECT_EQ(targets_of(r.resolve("Alice.Smith+x+y@example.org")), std::vector{mailbox("alice")});
  EXPECT_EQ(targets_of(r.resolve("info+news@other.test")), std::vector{mailbox("carol")});
  EXPECT_FALSE(r.resolve("nobody+x@example.org").known);
  EXPECT_FALSE(r.resolve("+bob@example.org").known);  // no local part before the tag
}

TEST(LocalResolver, TheFullAddressWinsOverTheBase) {
  auto r = resolver(std::string(kUsers) + "user dave ! bob+x@example.org\nalias bob+y@example.org alice\n");
  EXPECT_EQ(targets_of(r.resolve("bob+x@example.org")), std::vector{mailbox("dave")});
  EXPECT_EQ(targets_of(r.resolve("bob+y@example.org")), std::vector{mailbox("alice")});
  EXPECT_EQ(targets_of(r.resolve("bob+z@example.org")), std::vector{mailbox("bob")});
}

TEST(LocalResolver, DelimiterCanBeChangedOrTurnedOff) {
  auto off = resolver(kUsers, "");
  EXPECT_FALSE(off.resolve("bob+lists@example.org").known);
  auto dash = resolver(kUsers, "-");
  EXPECT_EQ(targets_of(dash.resolve("bob-lists@example.org")), std::vector{mailbox("bob")});
  EXPECT_FALSE(dash.resolve("bob+lists@example.org").known);
}

TEST(LocalResolver, AliasesExpandToMailboxesAndForwards) {
  auto r = resolver(std::string(kUsers) +
                    "alias sales@example.org alice bob carol@elsewhere.test\n"
                    "alias team@example.org sales@example.org Carol@Other.test\n");
  EXPECT_EQ(targets_of(r.resolve("Sales@Example.org")),
            (std::vector{mailbox("alice"), mailbox("bob"), forward("carol@elsewhere.test")}));
  EXPECT_EQ(targets_of(r.resolve("team@example.org")),
            (std::vector{mailbox("alice"), mailbox("bob"), forward("carol@elsewhere.test"), mailbox("carol")}));
  // The plus-tag applies to aliases too.
  EXPECT_EQ(targets_of(r.resolve("sales+q3@example.org")).size(), 3u);
}

TEST(LocalResolver, AliasWinsOverOwnerAndName) {
  auto r = resolver(std::string(kUsers) +
                    "alias bob@example.org bob@elsewhere.test\n"
                    "alias alice@example.org carol\n");
  EXPECT_EQ(targets_of(r.resolve("bob@example.org")), std::vector{forward("bob@elsewhere.test")});
  EXPECT_EQ(targets_of(r.resolve("alice@example.org")), std::vector{mailbox("carol")});
  EXPECT_EQ(targets_of(r.resolve("bob@other.test")), std::vector{mailbox("bob")});  // no alias there
}

TEST(LocalResolver, AliasTargetNamesNeedNotExistYet) {
  auto r = resolver(std::string(kUsers) + "alias new@example.org dave\n");
  EXPECT_EQ(targets_of(r.resolve("new@example.org")), std::vector{mailbox("dave")});
}

TEST(LocalResolver, TargetsAreDeduplicated) {
  auto r = resolver(std::string(kUsers) +
                    "alias a@example.org alice bob x@elsewhere.test\n"
                    "alias b@example.org bob alice@example.org X@ELSEWHERE.test\n"
                    "alias all@example.org a@example.org b@example.org alice.smith@example.org\n");
  EXPECT_EQ(targets_of(r.resolve("all@example.org")),
            (std::vector{mailbox("alice"), mailbox("bob"), forward("x@elsewhere.test")}));
}

TEST(LocalResolver, DiamondIsNotALoop) {
  auto r = resolver(std::string(kUsers) +
                    "alias top@example.org left@example.org right@example.org\n"
                    "alias left@example.org bottom@example.org\n"
                    "alias right@example.org bottom@example.org\n"
                    "alias bottom@example.org bob\n");
  EXPECT_EQ(targets_of(r.resolve("top@example.org")), std::vector{mailbox("bob")});
}

TEST(LocalResolver, CyclesAreAliasLoops) {
  auto r = resolver(std::string(kUsers) +
                    "alias self@example.org self@example.org\n"
                    "alias ping@example.org bob pong@example.org\n"
                    "alias pong@other.test PING@example.org\n"
                    "alias pong@example.org pong@other.test\n"
                    "alias tag@example.org tag+x@example.org\n");
  for (const char* a :
       {"self@example.org", "ping@example.org", "pong@other.test", "tag@example.org", "tag+y@example.org"}) {
    Resolution res = r.resolve(a);
    EXPECT_FALSE(res.known) << a;
    EXPECT_EQ(res.error, "alias loop") << a;
    EXPECT_TRUE(res.targets.empty()) << a;
  }
}

TEST(LocalResolver, TenLevelsDeepAreFineElevenAreALoop) {
  std::string users = kUsers;
  for (int i = 0; i < 11; ++i)
    users += tern::concat({"alias l", std::to_string(i), "@example.org l", std::to_string(i + 1), "@example.org\n"});
  users += "alias l11@example.org bob\n";
  auto r = resolver(users);
  // l1 → l2 → ... → l11 → bob: 10 nested expansions.
  EXPECT_EQ(targets_of(r.resolve("l1@example.org")), std::vector{mailbox("bob")});
  Resolution deep = r.resolve("l0@example.org");
  EXPECT_FALSE(deep.known);
  EXPECT_EQ(deep.error, "alias loop");
}

TEST(LocalResolver, AliasToAnUnknownLocalAddressFails) {
  auto r = resolver(std::string(kUsers) + "alias list@example.org bob ghost@example.org\n");
  Resolution res = r.resolve("list@example.org");
  EXPECT_FALSE(res.known);
  EXPECT_NE(res.error.find("ghost@example.org"), std::string::npos) << res.error;
  EXPECT_TRUE(res.targets.empty());
}

TEST(LocalResolver, CatchAllTakesUnknownLocalParts) {
  auto r = resolver(kUsers, "+", {{"Example.ORG", "bob"}, {"other.test", "sales@example.org"}});
  EXPECT_EQ(targets_of(r.resolve("whoever@example.org")), std::vector{mailbox("bob")});
  EXPECT_EQ(targets_of(r.resolve("alice@example.org")), std::vector{mailbox("alice")});  // known first
  // A catch-all address is resolved like an alias target: here it is itself
  // caught by example.org's catch-all.
  EXPECT_EQ(targets_of(r.resolve("x@other.test")), std::vector{mailbox("bob")});
  // Before the postmaster rule.
  EXPECT_EQ(targets_of(r.resolve("postmaster@example.org")), std::vector{mailbox("bob")});
}

TEST(LocalResolver, CatchAllToAnAliasOrAForward) {
  auto r = resolver(std::string(kUsers) + "alias sales@example.org alice carol\n", "+",
                    {{"example.org", "sales@example.org"}, {"other.test", "Desk@Elsewhere.test"}});
  EXPECT_EQ(targets_of(r.resolve("unknown@example.org")), (std::vector{mailbox("alice"), mailbox("carol")}));
  EXPECT_EQ(targets_of(r.resolve("unknown@other.test")), std::vector{forward("Desk@Elsewhere.test")});
}

TEST(LocalResolver, CatchAllToAnUnknownAddressOfItsOwnDomainIsALoop) {
  auto r = resolver(kUsers, "+", {{"example.org", "nobody@example.org"}});
  Resolution res = r.resolve("x@example.org");
  EXPECT_FALSE(res.known);
  EXPECT_EQ(res.error, "alias loop");
}

TEST(LocalResolver, PostmasterIsAlwaysAccepted) {
  auto r = resolver();
  EXPECT_EQ(targets_of(r.resolve("postmaster@example.org")), std::vector{mailbox("postmaster")});
  EXPECT_EQ(targets_of(r.resolve("PostMaster@OTHER.test")), std::vector{mailbox("postmaster")});
  EXPECT_EQ(targets_of(r.resolve("postmaster+x@example.org")), std::vector{mailbox("postmaster")});
  EXPECT_EQ(targets_of(r.resolve("Postmaster")), std::vector{mailbox("postmaster")});  // RFC 5321 §4.1.1.3
  EXPECT_FALSE(r.resolve("postmaster@example.com").known);
}

TEST(LocalResolver, PostmasterAliasPointsAtAPerson) {
  auto r = resolver(std::string(kUsers) + "alias postmaster@example.org alice\n");
  EXPECT_EQ(targets_of(r.resolve("postmaster@example.org")), std::vector{mailbox("alice")});
  EXPECT_EQ(targets_of(r.resolve("POSTMASTER")), std::vector{mailbox("alice")});  // first local domain
  EXPECT_EQ(targets_of(r.resolve("postmaster@other.test")), std::vector{mailbox("postmaster")});
}

TEST(LocalResolver, PercentRoutingBetweenLocalDomains) {
  auto r = resolver();
  // "user%other@ours" is user@other when other is local too (one hop).
  EXPECT_EQ(targets_of(r.resolve("info%other.test@example.org")), std::vector{mailbox("carol")});
  EXPECT_FALSE(r.resolve("bob%evil.example@example.org").known);
  EXPECT_FALSE(r.resolve("bob%evil.example%other.test@example.org").known);
}

}  // namespace
