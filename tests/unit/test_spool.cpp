#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "queue/queue_id.h"
#include "queue/reclaim.h"
#include "queue/spool.h"

extern char** environ;

namespace tern::queue {
namespace {

constexpr int64_t kHourUs = 3'600'000'000;

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A directory under /tmp, removed with everything in it at the end of scope.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tern-spool-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<Spool> open_spool(const std::string& dir, int64_t retention_us = kHourUs) {
  auto spool = Spool::open(SpoolOptions{dir, retention_us});
  if (!spool.ok()) {
    ADD_FAILURE() << spool.error();
    return nullptr;
  }
  return std::move(spool.value());
}

// The outcome of one asynchronous spool call. The promise is shared with the
// callback so it lives until set_value() has returned, whoever finishes first.
class Outcome {
 public:
  Outcome() : promise_(std::make_shared<std::promise<Status>>()), result_(promise_->get_future()) {}
  Spool::Done callback() const {
    return [promise = promise_](Status s) { promise->set_value(std::move(s)); };
  }
  Status get() { return result_.get(); }

 private:
  std::shared_ptr<std::promise<Status>> promise_;
  std::future<Status> result_;
};

// Runs an asynchronous spool call and waits for its `done`.
template <typename Submit>
Status wait(Submit submit) {
  Outcome outcome;
  submit(outcome.callback());
  return outcome.get();
}

Envelope make_envelope(std::string id, uint32_t body_chunks, uint64_t body_size, QueueName queue = QueueName::incoming,
                       int64_t due_us = 0) {
  Envelope env;
  env.id = std::move(id);
  env.sender = "sender@example.org";
  env.recipients.push_back({"rcpt@example.net", notify_failure, "rfc822;rcpt@example.net", {}, ""});
  env.arrival_us = now_us();
  env.client_ip = "192.0.2.1";
  env.client_helo = "client.example.org";
  env.protocol = "ESMTP";
  env.body_size = body_size;
  env.body_chunks = body_chunks;
  env.queue = queue;
  env.next_attempt_us = due_us;
  return env;
}

Status commit_one(Spool& spool, const Envelope& env, std::optional<std::string> last_chunk) {
  return wait([&](Spool::Done done) { spool.commit(env, std::move(last_chunk), std::move(done)); });
}

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// The spool's count of messages in queue `q`.
uint64_t queued(const Spool& spool, QueueName q) {
  const auto at = std::find(kAllQueues.begin(), kAllQueues.end(), q);
  return spool.stats().queued[static_cast<size_t>(at - kAllQueues.begin())];
}

bool contains_id(const std::vector<Envelope>& envs, const std::string& id) {
  return std::any_of(envs.begin(), envs.end(), [&](const Envelope& e) { return e.id == id; });
}

// Direct access to the RocksDB files, to look at what the Spool API hides
// (orphan chunks) or to damage it the way a bug or crash could.
class RawSpool {
 public:
  RawSpool(const std::string& dir, bool read_only) {
    std::vector<std::string> names;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names);
    if (!s.ok()) throw std::runtime_error(s.ToString());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& name : names) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    s = read_only ? rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, descriptors, &handles, &db)
                  : rocksdb::DB::Open(rocksdb::DBOptions(), dir, descriptors, &handles, &db);
    if (!s.ok()) throw std::runtime_error(s.ToString());
    db_.reset(db);
    for (size_t i = 0; i < names.size(); ++i) handles_[names[i]] = handles[i];
  }
  ~RawSpool() {
    for (auto& [name, handle] : handles_) db_->DestroyColumnFamilyHandle(handle);
  }
  RawSpool(const RawSpool&) = delete;
  RawSpool& operator=(const RawSpool&) = delete;

  std::vector<std::string> keys(const std::string& family) {
    std::vector<std::string> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_.at(family)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) out.push_back(it->key().ToString());
    return out;
  }
  void put(const std::string& family, const std::string& key, const std::string& value) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db_->Put(wo, handles_.at(family), key, value).ok());
  }
  void erase(const std::string& family, const std::string& key) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db_->Delete(wo, handles_.at(family), key).ok());
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> handles_;
};

// Key layout from spool.cpp, for building damaged entries in tests.
std::string schedule_key(QueueName q, int64_t due_us, const std::string& id) {
  std::string key(1, static_cast<char>(q));
  uint64_t biased = static_cast<uint64_t>(due_us) ^ (uint64_t{1} << 63);
  for (int i = 7; i >= 0; --i) key.push_back(static_cast<char>((biased >> (8 * i)) & 0xff));
  return key + id;
}

std::set<std::string> ids_of_chunks(const std::vector<std::string>& chunk_keys) {
  std::set<std::string> ids;
  for (const auto& key : chunk_keys) ids.insert(key.substr(0, key.size() - 4));
  return ids;
}

// ---- crash child --------------------------------------------------------
// The crash test starts this binary again with kCrashChildEnv set; the child
// does its writes and then dies without closing anything, before gtest runs.

constexpr const char* kCrashChildEnv = "TERN_SPOOL_TEST_CRASH_CHILD_DIR";
const std::string kIncomingId = "0000000000000A00";
const std::string kActiveId = "0000000000000B00";
const std::string kRetryId = "0000000000000C00";
const std::string kOrphanId = "0000000000000D00";

int crash_child(const std::string& dir) {
  auto opened = Spool::open(SpoolOptions{dir, kHourUs});
  if (!opened.ok()) return 10;
  Spool& spool = *opened.value();
  if (!commit_one(spool, make_envelope(kIncomingId, 1, 6), "A body")) return 11;
  if (!commit_one(spool, make_envelope(kActiveId, 1, 6), "B body")) return 12;
  if (!spool.move_sync(kActiveId, QueueName::active, now_us())) return 13;
  if (!wait([&](Spool::Done d) { spool.append_chunk(kRetryId, 0, "C part 1, ", std::move(d)); })) return 14;
  if (!commit_one(spool, make_envelope(kRetryId, 2, 18, QueueName::retry1, now_us() + kHourUs), "C part 2")) {
    return 15;
  }
  for (uint32_t i = 0; i < 3; ++i) {
    if (!wait([&](Spool::Done d) { spool.append_chunk(kOrphanId, i, std::string(10'000, 'o'), std::move(d)); })) {
      return 16;
    }
  }
  return 0;
}

[[maybe_unused]] const bool crash_child_ran = [] {
  if (const char* dir = std::getenv(kCrashChildEnv)) std::_Exit(crash_child(dir));
  return false;
}();

int run_crash_child(const std::string& dir) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kCrashChildEnv) + "=" + dir);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<char*> argv{self.data(), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), envp.data()) != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// ---- tests ----------------------------------------------------------------

TEST(SpoolTest, CommitSurvivesReopen) {
  TempDir dir;
  Envelope env = make_envelope(new_queue_id(), 1, 23);
  env.message_id = "<m1@example.org>";
  env.smtputf8 = true;
  const std::string body = "Subject: hi\r\n\r\nHello\r\n";
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    Status s = commit_one(*spool, env, body);
    ASSERT_TRUE(s) << s.error();
    SpoolStats stats = spool->stats();
    EXPECT_EQ(stats.commits, 1u);
    EXPECT_EQ(stats.wal_syncs, 1u);
    EXPECT_EQ(stats.batches, 1u);
  }
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  EXPECT_EQ(spool->directory(), dir.path());
  std::optional<Envelope> back = spool->get(env.id);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, env);
  auto read = spool->read_body(env.id);
  ASSERT_TRUE(read.ok()) << read.error();
  EXPECT_EQ(read.value(), body);
  std::vector<Envelope> all = spool->list();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], env);
}

// each() hands over what list() returns, oldest first, removed messages
// left out (release and flush go through a whole queue with it).
TEST(SpoolTest, EachVisitsEveryQueuedMessageOldestFirst) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(new_queue_id());
  std::sort(ids.begin(), ids.end());
  for (int i : {3, 0, 4, 1, 2}) {
    ASSERT_TRUE(commit_one(*spool, make_envelope(ids[i], 0, 0, i % 2 ? QueueName::retry1 : QueueName::incoming, i),
                           std::nullopt));
  }
  ASSERT_TRUE(spool->remove_sync(ids[1], "delivered"));
  std::vector<std::string> visited;
  std::vector<QueueName> queues;
  spool->each([&](const Envelope& env) {
    visited.push_back(env.id);
    queues.push_back(env.queue);
  });
  EXPECT_EQ(visited, (std::vector<std::string>{ids[0], ids[2], ids[3], ids[4]}));
  EXPECT_EQ(queues, (std::vector<QueueName>{QueueName::incoming, QueueName::incoming, QueueName::retry1,
                                            QueueName::incoming}));
  std::vector<std::string> listed;
  for (const Envelope& env : spool->list()) listed.push_back(env.id);
  EXPECT_EQ(listed, visited);
}

TEST(SpoolTest, ChunkedBodyOfSeveralMegabytes) {
  TempDir dir;
  constexpr size_t kChunk = 64 << 10;
  const std::string body = random_bytes(5'000'000 + 123, 42);
  const uint32_t chunks = static_cast<uint32_t>((body.size() + kChunk - 1) / kChunk);
  Envelope env = make_envelope(new_queue_id(), chunks, body.size());
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    std::atomic<int> ok{0};
    std::atomic<int> answered{0};
    for (uint32_t i = 0; i + 1 < chunks; ++i) {
      spool->append_chunk(env.id, i, body.substr(i * kChunk, kChunk), [&](Status s) {
        if (s) ++ok;
        ++answered;
      });
    }
    Status s = commit_one(*spool, env, body.substr(size_t{chunks - 1} * kChunk));
    ASSERT_TRUE(s) << s.error();
    // Requests are answered in order, so every append was answered before the commit.
    EXPECT_EQ(answered.load(), static_cast<int>(chunks - 1));
    EXPECT_EQ(ok.load(), static_cast<int>(chunks - 1));
    EXPECT_EQ(spool->stats().chunk_writes, chunks - 1);
    auto read = spool->read_body(env.id);
    ASSERT_TRUE(read.ok()) << read.error();
    EXPECT_TRUE(read.value() == body);
  }
  // After reopening, the chunks come from flushed tables and blob files.
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  auto read = spool->read_body(env.id);
  ASSERT_TRUE(read.ok()) << read.error();
  EXPECT_EQ(read.value().size(), body.size());
  EXPECT_TRUE(read.value() == body);
}

TEST(SpoolTest, CommitWithoutLastChunkUsesAppendedChunks) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  std::string id = new_queue_id();
  for (uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(wait([&](Spool::Done d) { spool->append_chunk(id, i, "part" + std::to_string(i), std::move(d)); }));
  }
  ASSERT_TRUE(commit_one(*spool, make_envelope(id, 3, 15), std::nullopt));
  auto read = spool->read_body(id);
  ASSERT_TRUE(read.ok()) << read.error();
  EXPECT_EQ(read.value(), "part0part1part2");
}

// With the envelope in hand the caller passes its chunk count and size.
TEST(SpoolTest, ReadBodyWithKnownChunks) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  std::string several = new_queue_id();
  for (uint32_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(wait([&](Spool::Done d) { spool->append_chunk(several, i, "part" + std::to_string(i), std::move(d)); }));
  }
  ASSERT_TRUE(commit_one(*spool, make_envelope(several, 3, 15), "part2"));
  std::string one = new_queue_id();
  ASSERT_TRUE(commit_one(*spool, make_envelope(one, 1, 4), "body"));

  auto read = spool->read_body(several, 3, 15);
  ASSERT_TRUE(read.ok()) << read.error();
  EXPECT_EQ(read.value(), "part0part1part2");
  read = spool->read_body(one, 1, 4);
  ASSERT_TRUE(read.ok()) << read.error();
  EXPECT_EQ(read.value(), "body");

  ASSERT_TRUE(spool->remove_sync(one, "deleted"));
  read = spool->read_body(one, 1, 4);
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.error().find("missing"), std::string::npos) << read.error();
}

// Only one-chunk bodies within the bound are read; a removed one reads as nullopt.
TEST(SpoolTest, ReadSmallBodies) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  std::string small = new_queue_id();
  ASSERT_TRUE(commit_one(*spool, make_envelope(small, 1, 4), "body"));
  std::string large = new_queue_id();
  ASSERT_TRUE(commit_one(*spool, make_envelope(large, 1, 9), "long body"));
  std::string several = new_queue_id();
  ASSERT_TRUE(wait([&](Spool::Done d) { spool->append_chunk(several, 0, "ab", std::move(d)); }));
  ASSERT_TRUE(commit_one(*spool, make_envelope(several, 2, 4), "cd"));
  std::string removed = new_queue_id();
  ASSERT_TRUE(commit_one(*spool, make_envelope(removed, 1, 4), "gone"));
  ASSERT_TRUE(spool->remove_sync(removed, "deleted"));

  std::vector<Envelope> envelopes{make_envelope(small, 1, 4), make_envelope(large, 1, 9),
                                  make_envelope(several, 2, 4), make_envelope(removed, 1, 4)};
  auto bodies = spool->read_small_bodies(envelopes, 8);
  ASSERT_EQ(bodies.size(), 4u);
  ASSERT_TRUE(bodies[0]);
  EXPECT_EQ(*bodies[0], "body");
  EXPECT_FALSE(bodies[1]);
  EXPECT_FALSE(bodies[2]);
  EXPECT_FALSE(bodies[3]);
  EXPECT_EQ(*spool->read_small_bodies(envelopes, 9)[1], "long body");
}

TEST(SpoolTest, DiscardRemovesChunks) {
  TempDir dir;
  std::string discarded = new_queue_id();
  std::string kept = new_queue_id();
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    for (uint32_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(
          wait([&](Spool::Done d) { spool->append_chunk(discarded, i, std::string(8000, 'd'), std::move(d)); }));
      ASSERT_TRUE(wait([&](Spool::Done d) { spool->append_chunk(kept, i, std::string(8000, 'k'), std::move(d)); }));
    }
    Status s = wait([&](Spool::Done d) { spool->discard(discarded, 3, std::move(d)); });
    ASSERT_TRUE(s) << s.error();
    // Committing over discarded chunks finds none of them.
    ASSERT_TRUE(commit_one(*spool, make_envelope(discarded, 3, 24000), std::nullopt));
    auto read = spool->read_body(discarded);
    ASSERT_FALSE(read.ok());
    EXPECT_NE(read.error().find("missing"), std::string::npos) << read.error();
  }
  RawSpool raw(dir.path(), /*read_only=*/true);
  EXPECT_EQ(ids_of_chunks(raw.keys("bodies")), std::set<std::string>{kept});
  EXPECT_EQ(raw.keys("bodies").size(), 3u);
}

TEST(SpoolTest, MoveChangesQueueAndSchedule) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  const int64_t now = now_us();
  Envelope env = make_envelope(new_queue_id(), 1, 4, QueueName::incoming, now);
  ASSERT_TRUE(commit_one(*spool, env, "body"));
  ASSERT_TRUE(contains_id(spool->due(QueueName::incoming, now, 10), env.id));

  const int64_t retry_at = now + 5 * 60'000'000;
  Status s = spool->move_sync(env.id, QueueName::retry1, retry_at);
  ASSERT_TRUE(s) << s.error();
  EXPECT_TRUE(spool->due(QueueName::incoming, std::numeric_limits<int64_t>::max(), 10).empty());
  EXPECT_TRUE(spool->due(QueueName::retry1, retry_at - 1, 10).empty());
  std::vector<Envelope> due = spool->due(QueueName::retry1, retry_at, 10);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].id, env.id);
  EXPECT_EQ(due[0].queue, QueueName::retry1);
  EXPECT_EQ(due[0].next_attempt_us, retry_at);
  std::optional<Envelope> stored = spool->get(env.id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->queue, QueueName::retry1);
  EXPECT_EQ(stored->sender, env.sender);
  EXPECT_TRUE(spool->read_body(env.id).ok());

  Status missing = spool->move_sync(new_queue_id(), QueueName::hold, 0);
  EXPECT_FALSE(missing);
  EXPECT_NE(missing.error().find("no such message"), std::string::npos) << missing.error();
}

TEST(SpoolTest, UpdateReplacesEnvelopeAndMovesSchedule) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  Envelope env = make_envelope(new_queue_id(), 1, 4, QueueName::incoming, 100);
  ASSERT_TRUE(commit_one(*spool, env, "body"));
  env.queue = QueueName::hold;
  env.next_attempt_us = 200;
  env.attempts = 3;
  env.last_error = "451 4.7.1 try later";
  env.recipients[0].state = RecipientState::failed;
  Status s = wait([&](Spool::Done d) { spool->update(env, std::move(d)); });
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(spool->get(env.id), env);
  EXPECT_TRUE(spool->due(QueueName::incoming, 1000, 10).empty());
  EXPECT_EQ(spool->due(QueueName::hold, 1000, 10), std::vector<Envelope>{env});

  Envelope changed_body = env;
  changed_body.body_chunks = 2;
  EXPECT_FALSE(wait([&](Spool::Done d) { spool->update(changed_body, std::move(d)); }));
  Envelope unknown = make_envelope(new_queue_id(), 0, 0);
  EXPECT_FALSE(wait([&](Spool::Done d) { spool->update(unknown, std::move(d)); }));
  EXPECT_EQ(spool->get(env.id), env);
}

TEST(SpoolTest, RemoveMovesMessageToFinishedLog) {
  TempDir dir;
  std::string id = new_queue_id();
  Envelope env = make_envelope(id, 2, 20000);
  env.message_id = "<m1@example.org>";
  env.envid = "envelope-id";
  env.attempts = 2;
  env.last_error = "451 try later";
  env.recipients[0].state = RecipientState::delivered;
  env.recipients[0].status = "2.0.0";
  env.recipients[0].diagnostic = "250 2.0.0 ok";
  env.recipients[0].remote_mta = "mx.example.net";
  Recipient failed{"gone@example.net", notify_failure, "rfc822;gone@example.net", RecipientState::failed, "no"};
  failed.status = "5.1.1";
  failed.diagnostic = "550 5.1.1 no such user";
  env.recipients.push_back(failed);
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    ASSERT_TRUE(wait([&](Spool::Done d) { spool->append_chunk(id, 0, std::string(10000, 'x'), std::move(d)); }));
    ASSERT_TRUE(commit_one(*spool, env, std::string(10000, 'y')));
    const int64_t before = now_us();
    Status s = spool->remove_sync(id, "delivered");
    const int64_t after = now_us();
    ASSERT_TRUE(s) << s.error();

    EXPECT_FALSE(spool->get(id));
    EXPECT_TRUE(spool->list().empty());
    EXPECT_FALSE(spool->read_body(id).ok());
    EXPECT_TRUE(spool->due(QueueName::incoming, std::numeric_limits<int64_t>::max(), 10).empty());
    std::vector<FinishedRecord> log = spool->finished();
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].id, id);
    EXPECT_EQ(log[0].reason, "delivered");
    // The summary: who, when, from where, and how each recipient ended.
    const Envelope& summary = log[0].summary;
    EXPECT_EQ(summary.id, id);
    EXPECT_EQ(summary.sender, env.sender);
    EXPECT_EQ(summary.arrival_us, env.arrival_us);
    EXPECT_EQ(summary.client_ip, env.client_ip);
    EXPECT_EQ(summary.message_id, env.message_id);
    EXPECT_EQ(summary.body_size, env.body_size);
    EXPECT_EQ(summary.attempts, 2u);
    ASSERT_EQ(summary.recipients.size(), 2u);
    EXPECT_EQ(summary.recipients[0].address, "rcpt@example.net");
    EXPECT_EQ(summary.recipients[0].state, RecipientState::delivered);
    EXPECT_EQ(summary.recipients[0].status, "2.0.0");
    EXPECT_EQ(summary.recipients[0].diagnostic, "");
    EXPECT_EQ(summary.recipients[1].state, RecipientState::failed);
    EXPECT_EQ(summary.recipients[1].status, "5.1.1");
    EXPECT_EQ(summary.recipients[1].diagnostic, "550 5.1.1 no such user");
    // Left to the event log.
    EXPECT_EQ(summary.client_helo, "");
    EXPECT_EQ(summary.envid, "");
    EXPECT_EQ(summary.last_error, "");
    EXPECT_EQ(summary.body_chunks, 0u);
    EXPECT_EQ(summary.recipients[0].orcpt, "");
    EXPECT_EQ(summary.recipients[0].remote_mta, "");
    EXPECT_LT(encode(summary).size(), encode(env).size() * 2 / 3);
    EXPECT_GE(log[0].finished_us, before);
    EXPECT_LE(log[0].finished_us, after);

    EXPECT_FALSE(spool->remove_sync(id, "deleted"));
    EXPECT_EQ(spool->finished().size(), 1u);
  }
  RawSpool raw(dir.path(), /*read_only=*/true);
  EXPECT_TRUE(raw.keys("bodies").empty());
  EXPECT_TRUE(raw.keys("envelopes").empty());
  EXPECT_TRUE(raw.keys("schedule").empty());
  EXPECT_EQ(raw.keys("finished").size(), 1u);
}

TEST(SpoolTest, RecoverAfterCrash) {
  TempDir dir;
  ASSERT_EQ(run_crash_child(dir.path()), 0);
  {
    // The crash left the orphan chunks behind, and B in active.
    RawSpool raw(dir.path(), /*read_only=*/true);
    std::set<std::string> chunk_owners = ids_of_chunks(raw.keys("bodies"));
    EXPECT_EQ(chunk_owners, (std::set<std::string>{kIncomingId, kActiveId, kRetryId, kOrphanId}));
  }
  const int64_t before = now_us();
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    ASSERT_EQ(spool->get(kActiveId)->queue, QueueName::active);
    auto requeued = spool->recover();
    ASSERT_TRUE(requeued.ok()) << requeued.error();
    EXPECT_EQ(requeued.value(), 1u);
    EXPECT_EQ(queued(*spool, QueueName::incoming), 2u);
    EXPECT_EQ(queued(*spool, QueueName::active), 0u);
    EXPECT_EQ(queued(*spool, QueueName::retry1), 1u);

    std::optional<Envelope> b = spool->get(kActiveId);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->queue, QueueName::incoming);
    EXPECT_GE(b->next_attempt_us, before);
    EXPECT_LE(b->next_attempt_us, now_us());
    EXPECT_TRUE(spool->due(QueueName::active, std::numeric_limits<int64_t>::max(), 10).empty());
    std::vector<Envelope> incoming = spool->due(QueueName::incoming, now_us(), 10);
    ASSERT_EQ(incoming.size(), 2u);
    EXPECT_EQ(incoming[0].id, kIncomingId);
    EXPECT_EQ(incoming[1].id, kActiveId);
    std::vector<Envelope> retry = spool->due(QueueName::retry1, std::numeric_limits<int64_t>::max(), 10);
    ASSERT_EQ(retry.size(), 1u);
    EXPECT_EQ(retry[0].id, kRetryId);
    EXPECT_EQ(spool->list().size(), 3u);
    EXPECT_EQ(spool->read_body(kIncomingId).value(), "A body");
    EXPECT_EQ(spool->read_body(kActiveId).value(), "B body");
    EXPECT_EQ(spool->read_body(kRetryId).value(), "C part 1, C part 2");

    // Recovery is idempotent.
    auto again = spool->recover();
    ASSERT_TRUE(again.ok()) << again.error();
    EXPECT_EQ(again.value(), 0u);
    EXPECT_EQ(spool->due(QueueName::incoming, now_us(), 10).size(), 2u);
  }
  RawSpool raw(dir.path(), /*read_only=*/true);
  EXPECT_EQ(ids_of_chunks(raw.keys("bodies")), (std::set<std::string>{kIncomingId, kActiveId, kRetryId}));
  EXPECT_EQ(raw.keys("bodies").size(), 4u);
  EXPECT_EQ(raw.keys("envelopes").size(), 3u);
  EXPECT_EQ(raw.keys("schedule").size(), 3u);
}

TEST(SpoolTest, RecoverRepairsTheScheduleIndex) {
  TempDir dir;
  Envelope lost_entry = make_envelope(new_queue_id(), 0, 0, QueueName::retry2, 500);
  Envelope stale_entry = make_envelope(new_queue_id(), 0, 0, QueueName::incoming, 600);
  std::string ghost_id = new_queue_id();
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    ASSERT_TRUE(commit_one(*spool, lost_entry, std::nullopt));
    ASSERT_TRUE(commit_one(*spool, stale_entry, std::nullopt));
  }
  {
    RawSpool raw(dir.path(), /*read_only=*/false);
    raw.erase("schedule", schedule_key(QueueName::retry2, 500, lost_entry.id));
    raw.put("schedule", schedule_key(QueueName::hold, 600, stale_entry.id), "");
    raw.put("schedule", schedule_key(QueueName::incoming, 1, ghost_id), "");
    raw.put("bodies", lost_entry.id + std::string("\0\0\0\x07", 4), "chunk past body_chunks");
  }
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    auto requeued = spool->recover();
    ASSERT_TRUE(requeued.ok()) << requeued.error();
    EXPECT_EQ(requeued.value(), 0u);
    EXPECT_EQ(spool->due(QueueName::retry2, 1000, 10), std::vector<Envelope>{lost_entry});
    EXPECT_EQ(spool->due(QueueName::incoming, 1000, 10), std::vector<Envelope>{stale_entry});
    EXPECT_TRUE(spool->due(QueueName::hold, 1000, 10).empty());
  }
  RawSpool raw(dir.path(), /*read_only=*/true);
  EXPECT_EQ(raw.keys("schedule"), (std::vector<std::string>{schedule_key(QueueName::incoming, 600, stale_entry.id),
                                                            schedule_key(QueueName::retry2, 500, lost_entry.id)}));
  EXPECT_TRUE(raw.keys("bodies").empty());
}

TEST(SpoolTest, RecoverPurgesExpiredFinishedRecords) {
  // Long enough that the fresh record cannot expire between its removal and
  // recover(), even on a slow disk.
  constexpr int64_t kRetentionUs = 500'000;
  TempDir dir;
  std::string old_id = new_queue_id();
  {
    auto spool = open_spool(dir.path(), kRetentionUs);
    ASSERT_TRUE(spool);
    ASSERT_TRUE(commit_one(*spool, make_envelope(old_id, 0, 0), std::nullopt));
    ASSERT_TRUE(spool->remove_sync(old_id, "deleted"));
  }
  std::this_thread::sleep_for(std::chrono::microseconds(kRetentionUs + 200'000));
  std::string fresh_id = new_queue_id();
  {
    auto spool = open_spool(dir.path(), kRetentionUs);
    ASSERT_TRUE(spool);
    ASSERT_TRUE(commit_one(*spool, make_envelope(fresh_id, 0, 0), std::nullopt));
    ASSERT_TRUE(spool->remove_sync(fresh_id, "delivered"));
    ASSERT_EQ(spool->finished().size(), 2u);
    ASSERT_TRUE(spool->recover().ok());
    std::vector<FinishedRecord> log = spool->finished();
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].id, fresh_id);
  }
  // A long retention keeps everything.
  auto spool = open_spool(dir.path(), kHourUs);
  ASSERT_TRUE(spool);
  ASSERT_TRUE(spool->recover().ok());
  EXPECT_EQ(spool->finished().size(), 1u);
}

TEST(SpoolTest, ExpiredFinishedRecordsArePurgedWhileRunning) {
  // The purge runs once per retention when that is under a minute, after a
  // write: records outlive the retention by at most one more.
  constexpr int64_t kRetentionUs = 300'000;
  TempDir dir;
  auto spool = open_spool(dir.path(), kRetentionUs);
  ASSERT_TRUE(spool);
  const std::string old_id = new_queue_id();
  ASSERT_TRUE(commit_one(*spool, make_envelope(old_id, 0, 0), std::nullopt));
  ASSERT_TRUE(spool->remove_sync(old_id, "delivered"));
  ASSERT_EQ(spool->finished().size(), 1u);
  std::this_thread::sleep_for(std::chrono::microseconds(2 * kRetentionUs + 100'000));
  const std::string fresh_id = new_queue_id();
  ASSERT_TRUE(commit_one(*spool, make_envelope(fresh_id, 0, 0), std::nullopt));
  ASSERT_TRUE(spool->remove_sync(fresh_id, "delivered"));
  // The purge follows the write that triggered it on the writer thread.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<FinishedRecord> log = spool->finished();
  while (log.size() > 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    log = spool->finished();
  }
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log.back().id, fresh_id);
  EXPECT_EQ(log.front().id, fresh_id);
}

TEST(SpoolTest, NoFinishedLogWithoutRetention) {
  TempDir dir;
  {
    auto spool = open_spool(dir.path(), 0);
    ASSERT_TRUE(spool);
    const std::string id = new_queue_id();
    ASSERT_TRUE(commit_one(*spool, make_envelope(id, 1, 1), "x"));
    ASSERT_TRUE(spool->remove_sync(id, "delivered"));
    EXPECT_FALSE(spool->get(id));
    EXPECT_TRUE(spool->finished().empty());
  }
  RawSpool raw(dir.path(), /*read_only=*/true);
  EXPECT_TRUE(raw.keys("finished").empty());
  EXPECT_TRUE(raw.keys("envelopes").empty());
}

TEST(SpoolTest, GroupCommitSharesSyncsAcrossConcurrentCommitters) {
  TempDir dir;
  constexpr int kThreads = 64;
  constexpr int kPerThread = 10;
  std::vector<std::vector<std::string>> ids(kThreads);
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          std::string id = new_queue_id();
          Status s = commit_one(*spool, make_envelope(id, 1, id.size()), id);
          if (!s) ++failures;
          ids[t].push_back(id);
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    SpoolStats stats = spool->stats();
    EXPECT_EQ(stats.commits, uint64_t{kThreads} * kPerThread);
    EXPECT_LT(stats.wal_syncs, stats.commits);
    EXPECT_EQ(stats.wal_syncs, stats.batches);  // every batch here held a commit
    std::printf("group commit: %llu commits in %llu synced batches\n", static_cast<unsigned long long>(stats.commits),
                static_cast<unsigned long long>(stats.wal_syncs));
  }
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  EXPECT_EQ(spool->list().size(), size_t{kThreads} * kPerThread);
  for (const auto& thread_ids : ids) {
    for (const auto& id : thread_ids) {
      auto body = spool->read_body(id);
      ASSERT_TRUE(body.ok()) << body.error();
      EXPECT_EQ(body.value(), id);
    }
  }
}

TEST(SpoolTest, DueRespectsTimeOrderAndLimit) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  const int64_t base = 1'000'000;
  std::vector<std::string> ids(10);
  // Submitted out of due order; due() must return them in due order.
  for (int i : {7, 2, 9, 0, 4, 1, 8, 3, 6, 5}) {
    ids[i] = new_queue_id();
    ASSERT_TRUE(commit_one(*spool, make_envelope(ids[i], 0, 0, QueueName::incoming, base + i * 1000), std::nullopt));
  }
  std::string early = new_queue_id();
  ASSERT_TRUE(commit_one(*spool, make_envelope(early, 0, 0, QueueName::incoming, -5), std::nullopt));
  ASSERT_TRUE(commit_one(*spool, make_envelope(new_queue_id(), 0, 0, QueueName::retry1, 0), std::nullopt));

  std::vector<Envelope> due = spool->due(QueueName::incoming, base + 4500, 100);
  ASSERT_EQ(due.size(), 6u);
  EXPECT_EQ(due[0].id, early);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(due[i + 1].id, ids[i]) << i;

  std::vector<Envelope> limited = spool->due(QueueName::incoming, base + 4500, 3);
  ASSERT_EQ(limited.size(), 3u);
  EXPECT_EQ(limited[2].id, ids[1]);

  EXPECT_EQ(spool->due(QueueName::incoming, base + 9000, 100).size(), 11u);
  EXPECT_EQ(spool->due(QueueName::incoming, std::numeric_limits<int64_t>::max(), 100).size(), 11u);
  EXPECT_EQ(spool->due(QueueName::incoming, -6, 100).size(), 0u);
  EXPECT_EQ(spool->due(QueueName::incoming, -5, 100).size(), 1u);
  EXPECT_TRUE(spool->due(QueueName::incoming, base + 4500, 0).empty());
  EXPECT_TRUE(spool->due(QueueName::retry2, std::numeric_limits<int64_t>::max(), 100).empty());
  EXPECT_EQ(spool->due(QueueName::retry1, 0, 100).size(), 1u);
}

// due() starts where the last scan found the first live entry, so it does
// not walk the tombstones of claimed mail again; entries put behind that
// start (earlier due times, commits that were stamped earlier but written
// later, requeued mail) must still be found.
TEST(SpoolTest, DueFindsEntriesPutBehindWhereTheLastScanStarted) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(new_queue_id());
    ASSERT_TRUE(commit_one(*spool, make_envelope(ids.back(), 0, 0, QueueName::incoming, 1000 + i), std::nullopt));
  }
  ASSERT_EQ(spool->due(QueueName::incoming, 5000, 2).size(), 2u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(wait([&](Spool::Done d) { spool->claim(ids[i], std::move(d)); }));
  }
  std::vector<Envelope> rest = spool->due(QueueName::incoming, 5000, 10);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].id, ids[3]);

  // Everything claimed: the next scan finds nothing up to its `now`...
  for (int i = 3; i < 5; ++i) {
    ASSERT_TRUE(wait([&](Spool::Done d) { spool->claim(ids[i], std::move(d)); }));
  }
  EXPECT_TRUE(spool->due(QueueName::incoming, 5000, 10).empty());
  // ...and still sees what is put before that later on.
  std::string late = new_queue_id();
  ASSERT_TRUE(commit_one(*spool, make_envelope(late, 0, 0, QueueName::incoming, 10), std::nullopt));
  ASSERT_TRUE(spool->move_sync(ids[0], QueueName::incoming, 20));
  std::vector<Envelope> found = spool->due(QueueName::incoming, 5000, 10);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].id, late);
  EXPECT_EQ(found[1].id, ids[0]);
  EXPECT_TRUE(spool->due(QueueName::incoming, 5, 10).empty());
  EXPECT_EQ(spool->due(QueueName::incoming, 10, 10).size(), 1u);

  // recover() returns `active` mail to incoming: found again after it.
  ASSERT_EQ(spool->due(QueueName::incoming, std::numeric_limits<int64_t>::max(), 10).size(), 2u);
  auto requeued = spool->recover();
  ASSERT_TRUE(requeued.ok()) << requeued.error();
  EXPECT_EQ(*requeued, 4u);
  EXPECT_EQ(spool->due(QueueName::incoming, std::numeric_limits<int64_t>::max(), 10).size(), 6u);
  // A claim after recover() takes the requeued message out of incoming.
  ASSERT_TRUE(wait([&](Spool::Done d) { spool->claim(ids[1], std::move(d)); }));
  std::vector<Envelope> left = spool->due(QueueName::incoming, std::numeric_limits<int64_t>::max(), 10);
  EXPECT_EQ(left.size(), 5u);
  EXPECT_FALSE(contains_id(left, ids[1]));
}

// A release or a flush moves a whole backlog to one due time: due() starts
// at the first live entry it saw within that time too (not at the time's
// first entry, which would walk the tombstones of everything claimed since),
// and still finds an entry put at that time before its start.
TEST(SpoolTest, DueStartsWithinOneDueTimeAndFindsEntriesPutBeforeTheStart) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  constexpr int64_t kReleasedAt = 1000;
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(new_queue_id());
  std::sort(ids.begin(), ids.end());
  for (int i = 1; i < 6; ++i) {
    ASSERT_TRUE(commit_one(*spool, make_envelope(ids[i], 0, 0, QueueName::retry1, kReleasedAt), std::nullopt));
  }
  auto due_ids = [&](size_t limit) {
    std::vector<std::string> out;
    for (const Envelope& env : spool->due(QueueName::retry1, 5000, limit)) out.push_back(env.id);
    return out;
  };
  auto claim = [&](const std::string& id) { return wait([&](Spool::Done d) { spool->claim(id, std::move(d)); }); };

  ASSERT_EQ(due_ids(2), (std::vector<std::string>{ids[1], ids[2]}));
  ASSERT_TRUE(claim(ids[1]));
  ASSERT_TRUE(claim(ids[2]));
  EXPECT_EQ(due_ids(2), (std::vector<std::string>{ids[3], ids[4]}));
  // Same due time, an id before where the scan now starts.
  ASSERT_TRUE(commit_one(*spool, make_envelope(ids[0], 0, 0, QueueName::retry1, kReleasedAt), std::nullopt));
  EXPECT_EQ(due_ids(10), (std::vector<std::string>{ids[0], ids[3], ids[4], ids[5]}));
  ASSERT_TRUE(claim(ids[0]));
  ASSERT_TRUE(claim(ids[3]));
  EXPECT_EQ(due_ids(10), (std::vector<std::string>{ids[4], ids[5]}));
  // A message moved back to that due time (a requeue) is found again.
  ASSERT_TRUE(spool->move_sync(ids[2], QueueName::retry1, kReleasedAt));
  EXPECT_EQ(due_ids(10), (std::vector<std::string>{ids[2], ids[4], ids[5]}));
}

TEST(SpoolTest, RefusesWritesThatWouldCorruptMessages) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  Envelope env = make_envelope(new_queue_id(), 1, 8);
  ASSERT_TRUE(commit_one(*spool, env, "original"));

  Envelope duplicate = env;
  duplicate.sender = "someone-else@example.org";
  EXPECT_FALSE(commit_one(*spool, duplicate, "overwrite"));
  EXPECT_FALSE(wait([&](Spool::Done d) { spool->append_chunk(env.id, 0, "overwrite", std::move(d)); }));
  EXPECT_FALSE(wait([&](Spool::Done d) { spool->discard(env.id, 1, std::move(d)); }));
  EXPECT_EQ(spool->get(env.id), env);
  EXPECT_EQ(spool->read_body(env.id).value(), "original");

  EXPECT_FALSE(commit_one(*spool, make_envelope("not-a-queue-id", 0, 0), std::nullopt));
  EXPECT_FALSE(commit_one(*spool, make_envelope(new_queue_id(), 0, 0), "chunk without body_chunks"));
  EXPECT_FALSE(wait([&](Spool::Done d) { spool->append_chunk("", 0, "x", std::move(d)); }));
  EXPECT_EQ(spool->list().size(), 1u);
  EXPECT_EQ(spool->stats().commits, 1u);
}

TEST(SpoolTest, RequestsOnOneMessageComposeWithinABatch) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  // A large chunk keeps the writer busy so the following requests queue up
  // behind it and are likely to share one batch; they must compose either way.
  Outcome filler;
  spool->append_chunk(new_queue_id(), 0, std::string(16 << 20, 'f'), filler.callback());
  Envelope moved = make_envelope(new_queue_id(), 1, 1);
  Envelope removed = make_envelope(new_queue_id(), 1, 1);
  std::vector<Outcome> results(5);
  spool->commit(moved, "m", results[0].callback());
  spool->move(moved.id, QueueName::retry1, 42, results[1].callback());
  spool->commit(removed, "r", results[2].callback());
  spool->remove(removed.id, "deleted", results[3].callback());
  spool->move(removed.id, QueueName::hold, 0, results[4].callback());
  EXPECT_TRUE(filler.get());
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(results[i].get()) << i;
  EXPECT_FALSE(results[4].get());  // it was removed just before

  EXPECT_EQ(spool->due(QueueName::retry1, 42, 10).size(), 1u);
  EXPECT_TRUE(spool->due(QueueName::incoming, std::numeric_limits<int64_t>::max(), 10).empty());
  EXPECT_EQ(queued(*spool, QueueName::retry1), 1u);
  EXPECT_EQ(queued(*spool, QueueName::incoming), 0u);
  EXPECT_EQ(queued(*spool, QueueName::hold), 0u);
  EXPECT_FALSE(spool->get(removed.id));
  ASSERT_EQ(spool->finished().size(), 1u);
  EXPECT_EQ(spool->finished()[0].summary.id, removed.id);
}

TEST(SpoolTest, QueueCountsFollowEveryChangeAndSurviveReopen) {
  TempDir dir;
  Envelope a = make_envelope(new_queue_id(), 1, 1);
  Envelope b = make_envelope(new_queue_id(), 1, 1);
  Envelope c = make_envelope(new_queue_id(), 1, 1, QueueName::hold);
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    for (QueueName q : kAllQueues) EXPECT_EQ(queued(*spool, q), 0u) << to_string(q);
    ASSERT_TRUE(commit_one(*spool, a, "a"));
    ASSERT_TRUE(commit_one(*spool, b, "b"));
    ASSERT_TRUE(commit_one(*spool, c, "c"));
    EXPECT_EQ(queued(*spool, QueueName::incoming), 2u);
    EXPECT_EQ(queued(*spool, QueueName::hold), 1u);

    ASSERT_TRUE(wait([&](Spool::Done d) { spool->claim(a.id, std::move(d)); }));
    EXPECT_EQ(queued(*spool, QueueName::incoming), 1u);
    EXPECT_EQ(queued(*spool, QueueName::active), 1u);
    Envelope retried = a;
    retried.queue = QueueName::retry2;
    retried.attempts = 1;
    ASSERT_TRUE(wait([&](Spool::Done d) { spool->update(retried, std::move(d)); }));
    EXPECT_EQ(queued(*spool, QueueName::active), 0u);
    EXPECT_EQ(queued(*spool, QueueName::retry2), 1u);
    ASSERT_TRUE(spool->move_sync(b.id, QueueName::retry1, 5));
    ASSERT_TRUE(spool->remove_sync(c.id, "deleted"));
    // Refused requests change nothing.
    EXPECT_FALSE(spool->remove_sync(c.id, "deleted"));
    EXPECT_FALSE(commit_one(*spool, b, "b"));
    EXPECT_EQ(queued(*spool, QueueName::incoming), 0u);
    EXPECT_EQ(queued(*spool, QueueName::retry1), 1u);
    EXPECT_EQ(queued(*spool, QueueName::retry2), 1u);
    EXPECT_EQ(queued(*spool, QueueName::hold), 0u);
  }
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  EXPECT_EQ(queued(*spool, QueueName::retry1), 1u);
  EXPECT_EQ(queued(*spool, QueueName::retry2), 1u);
  uint64_t total = 0;
  for (QueueName q : kAllQueues) total += queued(*spool, q);
  EXPECT_EQ(total, 2u);
}

TEST(SpoolTest, DestructorDrainsPendingRequests) {
  TempDir dir;
  constexpr int kMessages = 300;
  std::atomic<int> ok{0};
  std::atomic<int> answered{0};
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    for (int i = 0; i < kMessages; ++i) {
      spool->commit(make_envelope(new_queue_id(), 1, 4), "body", [&](Status s) {
        if (s) ++ok;
        ++answered;
      });
    }
  }
  EXPECT_EQ(answered.load(), kMessages);
  EXPECT_EQ(ok.load(), kMessages);
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  EXPECT_EQ(spool->list().size(), size_t{kMessages});
}

TEST(SpoolTest, ListIsOldestFirst) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(new_queue_id());
  // Committed newest first; listed oldest (smallest ID) first.
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    ASSERT_TRUE(commit_one(*spool, make_envelope(*it, 0, 0), std::nullopt));
  }
  std::vector<Envelope> listed = spool->list();
  ASSERT_EQ(listed.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(listed[i].id, ids[i]);
}

TEST(SpoolTest, OpenFailsCleanlyOnAnUnusableDirectory) {
  TempDir dir;
  std::string file = dir.path() + "/not-a-directory";
  { std::ofstream(file) << "x"; }
  auto spool = Spool::open(SpoolOptions{file + "/spool", kHourUs});
  EXPECT_FALSE(spool.ok());
  EXPECT_FALSE(spool.error().empty());
  EXPECT_FALSE(Spool::open(SpoolOptions{"", kHourUs}).ok());
}

TEST(SpoolTest, SecondOpenOfTheSameDirectoryFails) {
  TempDir dir;
  auto first = open_spool(dir.path());
  ASSERT_TRUE(first);
  auto second = Spool::open(SpoolOptions{dir.path(), kHourUs});
  EXPECT_FALSE(second.ok());
}


TEST(SpoolTest, IntakeIsRefusedBelowTheReserveWhileRemovalsGoOn) {
  TempDir dir;
  std::string kept = new_queue_id();
  {
    auto spool = open_spool(dir.path());
    ASSERT_TRUE(spool);
    ASSERT_TRUE(commit_one(*spool, make_envelope(kept, 1, 4), "body"));
  }
  // A reserve larger than any disk: every intake request is refused.
  SpoolOptions options{dir.path(), kHourUs};
  options.reserve_bytes = std::numeric_limits<uint64_t>::max() / 2;
  auto opened = Spool::open(options);
  ASSERT_TRUE(opened.ok()) << opened.error();
  Spool& spool = *opened.value();
  EXPECT_GT(spool.free_bytes(), 0u);
  EXPECT_TRUE(spool.writable());
  std::string id = new_queue_id();
  Status chunk = wait([&](Spool::Done done) { spool.append_chunk(id, 0, "part", std::move(done)); });
  ASSERT_FALSE(chunk.ok());
  EXPECT_NE(chunk.error().find("insufficient storage"), std::string::npos) << chunk.error();
  Status commit = commit_one(spool, make_envelope(id, 1, 4), "body");
  ASSERT_FALSE(commit.ok());
  EXPECT_NE(commit.error().find("insufficient storage"), std::string::npos) << commit.error();
  EXPECT_FALSE(spool.get(id));
  // Moving and removing what is queued still works: delivery frees space.
  EXPECT_TRUE(spool.move_sync(kept, QueueName::hold, 0).ok());
  EXPECT_TRUE(spool.remove_sync(kept, "delivered").ok());
  EXPECT_TRUE(spool.writable());
}

// Messages of 2 MiB (8 chunks of 256 KiB, as sessions write them), each
// with its own content; returns their IDs.
std::vector<std::string> commit_large_messages(Spool& spool, int count) {
  constexpr size_t kChunk = 256 << 10;
  constexpr uint32_t kChunks = 8;
  std::vector<std::string> ids;
  for (int m = 0; m < count; ++m) {
    Envelope env = make_envelope(new_queue_id(), kChunks, kChunk * kChunks);
    const std::string chunk = random_bytes(kChunk, static_cast<uint64_t>(m));
    for (uint32_t i = 0; i + 1 < kChunks; ++i) {
      EXPECT_TRUE(wait([&](Spool::Done done) { spool.append_chunk(env.id, i, chunk, std::move(done)); }));
    }
    EXPECT_TRUE(commit_one(spool, env, chunk));
    ids.push_back(env.id);
  }
  return ids;
}

// Waits (at most 20 s: the quiet time, the gap after a start-up pass, a slow
// disk) until a reclaimer pass has been counted and the spool's disk usage
// is below `bound`; returns that usage.
uint64_t wait_for_reclaim(Spool& spool, const std::string& dir, uint64_t bound) {
  auto given_back = [&] { return disk_usage(dir) < bound && spool.stats().reclaims > 0; };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!given_back() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return disk_usage(dir);
}

// What an empty spool keeps on disk: the MANIFEST (preallocated 4 MiB),
// OPTIONS files, small tables and logs.
constexpr uint64_t kEmptySpoolBytes = 8 << 20;

// Removed bodies leave blob and WAL files behind until a flush and a
// compaction drop them, which an idle spool never gets on its own: the
// reclaimer must give the space back while the spool stays open.
TEST(SpoolTest, SpaceOfRemovedBodiesIsGivenBackWhileOpen) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  // 48 MiB: more than a memtable, so blob files too.
  for (const std::string& id : commit_large_messages(*spool, 24)) ASSERT_TRUE(spool->remove_sync(id, "delivered"));
  const uint64_t full = disk_usage(dir.path());
  EXPECT_GT(full, uint64_t{24} << 20);

  EXPECT_LT(wait_for_reclaim(*spool, dir.path(), kEmptySpoolBytes), kEmptySpoolBytes) << "was " << full;
  SpoolStats stats = spool->stats();
  EXPECT_GE(stats.reclaims, 1u);
  EXPECT_EQ(stats.reclaim_failures, 0u);
  EXPECT_GT(stats.reclaimed_bytes, 0u);
}

// A blob file is deleted only once all of it is garbage; one that still
// holds a few live bodies (held or deferred mail among delivered mail) is
// collected by forced GC, which moves those bodies, intact, to a new file.
TEST(SpoolTest, MostlyGarbageBlobFilesAreCollected) {
  TempDir dir;
  auto spool = open_spool(dir.path());
  ASSERT_TRUE(spool);
  std::vector<std::string> ids = commit_large_messages(*spool, 24);
  std::map<std::string, std::string> kept;
  for (size_t m = 0; m < ids.size(); ++m) {
    if (m % 4 == 0) {
      auto body = spool->read_body(ids[m]);
      ASSERT_TRUE(body.ok()) << body.error();
      kept[ids[m]] = std::move(body.value());
    } else {
      ASSERT_TRUE(spool->remove_sync(ids[m], "delivered"));
    }
  }
  const uint64_t full = disk_usage(dir.path());
  const uint64_t live = kept.size() * (uint64_t{2} << 20);
  // Without GC the first blob file (32 MiB, a quarter of it live) would stay.
  EXPECT_LT(wait_for_reclaim(*spool, dir.path(), live + kEmptySpoolBytes), live + kEmptySpoolBytes) << "was " << full;
  for (const auto& [id, body] : kept) {
    auto read = spool->read_body(id);
    ASSERT_TRUE(read.ok()) << read.error();
    EXPECT_TRUE(read.value() == body) << id;
  }
}

TEST(SpoolTest, WriteReserveCoversAWalPreallocationAndAFlush) {
  // RocksDB preallocates a WAL file at 1.1 x the 32 MiB bodies memtable and a
  // flush writes up to that much in blob files: more than 64 MiB at once.
  EXPECT_GT(Spool::write_reserve_bytes(), uint64_t{67} << 20);
  EXPECT_LT(Spool::write_reserve_bytes(), uint64_t{128} << 20);
}

}  // namespace
}  // namespace tern::queue
