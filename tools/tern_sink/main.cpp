// tern-sink: the fast receiving SMTP server of the load-test kit
// (docs/tern-sink.md). The main thread parses options, starts the workers,
// then only waits for signals: SIGUSR1 reports, SIGINT/SIGTERM stop.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "mta/io/net.h"
#include "mta/io/tls.h"
#include "tools/tern_sink/fault_plan.h"
#include "tools/tern_sink/message_store.h"
#include "tools/tern_sink/options.h"
#include "tools/tern_sink/report.h"
#include "tools/tern_sink/sink_worker.h"

namespace {

using namespace tern;
using namespace tern::sink;

// How long a worker may take to hand over its counters, and to end its
// sessions at shutdown (sessions see EOF at once; only an injected delay
// can hold one longer) before it is abandoned.
constexpr auto kSnapshotWait = std::chrono::milliseconds(2000);
constexpr auto kStopWait = std::chrono::milliseconds(3000);

int fail(const std::string& message, int code) {
  std::fprintf(stderr, "tern-sink: %s\n", message.c_str());
  return code;
}

SinkStats collect(std::vector<std::unique_ptr<SinkWorker>>& workers) {
  SinkStats total;
  for (auto& w : workers)
    if (auto s = w->snapshot(kSnapshotWait)) total.merge(*s);
  return total;
}

// Written beside the target and renamed over it, so a reader polling the
// file never sees half a report.
void write_json(const std::string& path, const SinkStats& stats) {
  if (path.empty()) return;
  std::string tmp = path + ".tmp";
  std::string json = format_json(stats);
  bool ok;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(json.data(), static_cast<std::streamsize>(json.size()));
    out.close();
    ok = !out.fail();
  }
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0)
    std::fprintf(stderr, "tern-sink: cannot write %s\n", path.c_str());
}

void print_summary(const SinkStats& stats) {
  std::string text = format_summary(stats);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto parsed = parse_options(args);
  if (std::holds_alternative<HelpRequested>(parsed)) {
    std::fputs(usage_text().c_str(), stdout);
    return 0;
  }
  if (auto* err = std::get_if<OptionError>(&parsed)) return fail(err->message, 2);
  const SinkOptions options = std::get<SinkOptions>(std::move(parsed));

  std::vector<io::Endpoint> endpoints;
  for (const auto& l : options.listen) {
    auto ep = io::parse_endpoint(l);
    if (!ep) return fail("--listen " + l + ": " + ep.error(), 2);
    endpoints.push_back(ep.value());
  }

  // Signals are taken synchronously by this thread; every other thread
  // inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<const io::TlsContext> tls;
  if (options.advertises(kStartTls)) {
    auto ctx = options.cert.empty() ? io::TlsContext::create_self_signed(options.hostname)
                                    : io::TlsContext::create_server(options.cert, options.key, io::TlsProtocols{});
    if (!ctx) return fail("TLS: " + ctx.error(), 1);
    tls = ctx.value();
  }

  std::unique_ptr<MessageStore> store;
  if (!options.maildir.empty() || !options.mbox.empty()) {
    auto opened = options.maildir.empty() ? MessageStore::open_mbox(options.mbox)
                                          : MessageStore::open_maildir(options.maildir, options.hostname);
    if (!opened) return fail(opened.error(), 1);
    store = std::move(opened.value());
  }

  FaultPlan plan(options.faults);
  SinkShared shared(options, plan, tls, store.get());
  unsigned n_workers = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<SinkWorker>> workers;
  for (unsigned i = 0; i < n_workers; ++i) {
    workers.push_back(std::make_unique<SinkWorker>(shared, i));
    if (auto st = workers.back()->start(endpoints); !st) {
      for (auto& w : workers) w->abandon();
      for (auto& w : workers) w->join();
      return fail(st.error(), 1);
    }
  }
  if (auto plan_text = describe_rules(options.faults); !plan_text.empty())
    std::printf("tern-sink: injecting %s\n", plan_text.c_str());
  for (const auto& ep : endpoints) std::printf("tern-sink: listening on %s\n", ep.text.c_str());
  std::fflush(stdout);

  for (;;) {
    siginfo_t info{};
    int sig = sigwaitinfo(&signals, &info);
    if (sig == SIGUSR1) {
      SinkStats stats = collect(workers);
      if (!options.quiet) print_summary(stats);
      write_json(options.json_path, stats);
    } else if (sig == SIGTERM || sig == SIGINT) {
      break;
    }
  }

  for (auto& w : workers) w->request_stop();
  auto deadline = std::chrono::steady_clock::now() + kStopWait;
  for (auto& w : workers) {
    while (!w->finished() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    w->abandon();
    w->join();
  }
  // The store goes first: it completes every queued write, whose
  // completions are posted to loops the workers still own.
  store.reset();
  SinkStats stats = collect(workers);
  print_summary(stats);
  write_json(options.json_path, stats);
  workers.clear();
  return 0;
}
