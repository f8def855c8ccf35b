// The enqueue path: committing a 1 KiB message (envelope + body in one synced
// batch) and waiting for `done`, alone and with concurrent committers sharing
// one spool, the way sessions share it in the daemon. And a relayed message's
// whole life in the spool (commit, claim, removal), for the spool writer's
// ceiling: its CPU per message, with as many callers as it can group.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <memory>
#include <string>
#include <system_error>

#include "queue/queue_id.h"
#include "queue/spool.h"

namespace {

using tern::Status;
using tern::queue::Envelope;
using tern::queue::QueueName;
using tern::queue::Spool;

// One spool for the whole run, in a fresh directory under the temp dir that
// is removed at exit (after the spool has closed).
class BenchSpool {
 public:
  BenchSpool() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tern-bench-enqueue-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return;
    directory_ = pattern;
    auto opened = Spool::open(tern::queue::SpoolOptions{directory_, 0});
    if (opened.ok()) spool_ = std::move(opened.value());
  }
  ~BenchSpool() {
    spool_.reset();
    std::error_code ec;
    if (!directory_.empty()) std::filesystem::remove_all(directory_, ec);
  }
  BenchSpool(const BenchSpool&) = delete;
  BenchSpool& operator=(const BenchSpool&) = delete;

  Spool* get() const { return spool_.get(); }

 private:
  std::string directory_;
  std::unique_ptr<Spool> spool_;
};

Spool* shared_spool() {
  static BenchSpool spool;
  return spool.get();
}

Envelope message_envelope(const std::string& body) {
  Envelope env;
  env.id = tern::queue::new_queue_id();
  env.sender = "sender@example.org";
  env.recipients.push_back({"rcpt@example.net", 0, "", {}, ""});
  env.arrival_us = tern::queue::queue_id_time_us(env.id);
  env.client_ip = "192.0.2.1";
  env.client_helo = "client.example.org";
  env.protocol = "ESMTP";
  env.body_size = body.size();
  env.body_chunks = 1;
  env.queue = QueueName::incoming;
  env.next_attempt_us = env.arrival_us;
  return env;
}

void BM_EnqueueCommit(benchmark::State& state) {
  Spool* spool = shared_spool();
  if (spool == nullptr) {
    state.SkipWithError("cannot open the benchmark spool");
    return;
  }
  const std::string body(1024, 'x');
  // Thread 0 measures syncs per commit across all threads: the benchmark
  // library holds every thread at a barrier before and after the loop.
  tern::queue::SpoolStats before;
  if (state.thread_index() == 0) before = spool->stats();

  for (auto _ : state) {
    auto promise = std::make_shared<std::promise<Status>>();
    std::future<Status> result = promise->get_future();
    spool->commit(message_envelope(body), body, [promise](Status s) { promise->set_value(std::move(s)); });
    if (Status s = result.get(); !s) {
      state.SkipWithError(s.error().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());

  if (state.thread_index() == 0) {
    tern::queue::SpoolStats after = spool->stats();
    uint64_t commits = after.commits - before.commits;
    state.counters["wal_syncs_per_commit"] =
        commits == 0 ? 0.0 : static_cast<double>(after.wal_syncs - before.wal_syncs) / static_cast<double>(commits);
  }
}
BENCHMARK(BM_EnqueueCommit)->Threads(1)->Threads(8)->Threads(32)->UseRealTime();

// CPU seconds (user + system) of this process's spool writer thread.
double spool_writer_cpu_seconds() {
  double total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (!std::getline(comm, name) || name != "tern-spool") continue;
    std::ifstream stat_file(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    // Fields after the command name, which ends at the last ')': state is
    // field 3, utime and stime fields 14 and 15.
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    long ticks = 0;
    for (int n = 3; n <= 15 && fields >> field; ++n) {
      if (n >= 14) ticks += std::stol(field);
    }
    total += static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return total;
}

Status wait_for(const std::function<void(Spool::Done)>& submit) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> result = promise->get_future();
  submit([promise](Status s) { promise->set_value(std::move(s)); });
  return result.get();
}

// What a relayed message costs the spool: its commit (synced), its claim for
// delivery (unsynced) and its removal once delivered (synced), each waited
// for as the daemon's session and delivery engine wait.
void BM_MessageLifecycle(benchmark::State& state) {
  Spool* spool = shared_spool();
  if (spool == nullptr) {
    state.SkipWithError("cannot open the benchmark spool");
    return;
  }
  const std::string body(1024, 'x');
  double writer_before = 0;
  if (state.thread_index() == 0) writer_before = spool_writer_cpu_seconds();

  for (auto _ : state) {
    Envelope env = message_envelope(body);
    const std::string id = env.id;
    Status s = wait_for([&](Spool::Done done) { spool->commit(std::move(env), body, std::move(done)); });
    if (s) s = wait_for([&](Spool::Done done) { spool->claim(id, std::move(done)); });
    if (s) s = wait_for([&](Spool::Done done) { spool->remove(id, "delivered", std::move(done)); });
    if (!s) {
      state.SkipWithError(s.error().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());

  if (state.thread_index() == 0) {
    // Every thread's messages: the library runs the same count on each.
    const double messages = static_cast<double>(state.iterations()) * state.threads();
    state.counters["writer_us_per_msg"] = (spool_writer_cpu_seconds() - writer_before) * 1e6 / messages;
  }
}
BENCHMARK(BM_MessageLifecycle)->Threads(8)->Threads(64)->Threads(256)->UseRealTime();

}  // namespace
