// tern-bench: the load generator of Tern's load-test kit. See
// docs/tern-bench.md for the options and the report.
//
// T threads, each one io_uring loop (tern::io::Loop) running its share of
// the C client coroutines. A client claims the next message from a shared
// counter (the run's only shared write), connects when it has no
// connection, and runs the transaction; every claimed message ends with
// exactly one outcome. Each thread counts into its own Stats, merged when
// the threads have ended. The main thread only starts the threads, draws
// the progress line and writes the reports.
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mta/io/connection.h"
#include "mta/io/loop.h"
#include "mta/io/net.h"
#include "mta/io/task.h"
#include "mta/io/tls.h"
#include "mta/smtp/reply_parser.h"
#include "mta/smtp/sasl.h"
#include "queue/thread_name.h"
#include "tools/loadkit/bench_header.h"
#include "tools/tern_bench/message.h"
#include "tools/tern_bench/options.h"
#include "tools/tern_bench/pattern.h"
#include "tools/tern_bench/plot.h"
#include "tools/tern_bench/report.h"

namespace tern::bench {
namespace {

using Clock = std::chrono::steady_clock;

// SIGINT: start no new message, finish those in flight, report. A second
// SIGINT kills (the handler restores the default).
std::atomic<bool> g_interrupted{false};
void on_sigint(int) {
  g_interrupted.store(true);
  std::signal(SIGINT, SIG_DFL);
}

int64_t micros_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
}

uint64_t elapsed_us(Clock::time_point since) {
  int64_t d = micros_between(since, Clock::now());
  return d < 0 ? 0 : static_cast<uint64_t>(d);
}

// Reply results below zero: why no reply came.
constexpr int kEof = -1, kTimeout = -2, kIoError = -3, kMalformed = -4;

const char* failure_text(int code) {
  switch (code) {
    case kEof: return "connection closed by server";
    case kTimeout: return "timeout";
    case kMalformed: return "malformed reply";
    default: return "I/O error";
  }
}

// What every thread reads; written before the threads start.
struct Shared {
  const Options* opt = nullptr;
  io::Endpoint endpoint;
  std::shared_ptr<const io::TlsContext> tls;
  const MessageFactory* factory = nullptr;
  std::string auth_plain, auth_user, auth_password;  // base64, ready to send
  int64_t timeout_ms = 30'000;
  Clock::time_point start;
  int64_t start_unix_us = 0;
  std::optional<Clock::time_point> deadline;
  alignas(64) std::atomic<uint64_t> next{0};
};

struct alignas(64) Progress {
  std::atomic<uint64_t> done{0};
};

struct Claim {
  uint64_t index;
  Clock::time_point start;  // the scheduled start with --rate, else the claim time
};

// One thread: its loop, its clients, its counters.
struct Worker {
  Shared* sh = nullptr;
  io::Loop* loop = nullptr;
  Stats stats;
  std::mt19937_64 rng;
  Progress* progress = nullptr;
  unsigned live = 0;
  bool pipelining_used = false, bdat_used = false, tls_used = false;
  Clock::time_point finished;
  time_t date_second = 0;
  std::string date;

  std::optional<Claim> claim() {
    const Options& o = *sh->opt;
    if (g_interrupted.load(std::memory_order_relaxed)) return std::nullopt;
    if (o.messages && sh->next.load(std::memory_order_relaxed) >= o.messages) return std::nullopt;
    // With --rate, every message scheduled before the deadline is sent, late
    // or not (the lateness is latency); without, none starts after it.
    if (sh->deadline && o.rate <= 0 && Clock::now() >= *sh->deadline) return std::nullopt;
    uint64_t k = sh->next.fetch_add(1, std::memory_order_relaxed);
    if (o.messages && k >= o.messages) return std::nullopt;
    Clock::time_point when = Clock::now();
    if (o.rate > 0) {
      when = sh->start + std::chrono::microseconds(static_cast<int64_t>(static_cast<double>(k) * 1e6 / o.rate));
      if (sh->deadline && when >= *sh->deadline) return std::nullopt;
    }
    ++stats.sent;
    return Claim{k, when};
  }

  void error(const std::string& kind) {
    ++stats.connection_errors;
    ++stats.errors[kind];
    progress->done.fetch_add(1, std::memory_order_relaxed);
  }
  void failed(int code) {
    if (code >= 500) ++stats.perm_failed;
    else ++stats.temp_failed;
    progress->done.fetch_add(1, std::memory_order_relaxed);
  }
  void accepted(uint64_t bytes, Clock::time_point tstart) {
    ++stats.accepted;
    stats.bytes_accepted += bytes;
    auto now = Clock::now();
    int64_t us = micros_between(tstart, now);
    stats.latency[kMessage].record(us < 0 ? 0 : static_cast<uint64_t>(us));
    stats.count_accepted_at(static_cast<double>(micros_between(sh->start, now)) / 1e6);
    progress->done.fetch_add(1, std::memory_order_relaxed);
  }
  std::string_view date_now() {
    time_t now = time(nullptr);
    if (now != date_second) {
      date_second = now;
      date = rfc5322_date(now);
    }
    return date;
  }
};

// One client coroutine's state, reused for every message it sends.
struct Client {
  explicit Client(Worker* worker) : w(worker) {}
  Worker* w;
  std::unique_ptr<io::Connection> conn;
  smtp::ReplyParser parser;
  std::string line, cmd, to, headers;
  bool pipelining = false, bdat = false;
  uint64_t on_connection = 0;

  // One complete reply: its code, or kEof/kTimeout/kIoError/kMalformed.
  io::Task<int> reply() {
    for (;;) {
      // Fast path: pipelined replies usually arrive together; take the
      // buffered lines without another await.
      std::string_view in = conn->buffered();
      size_t lf = in.find('\n');
      if (lf != std::string_view::npos && lf < 4096) {
        size_t end = (lf > 0 && in[lf - 1] == '\r') ? lf - 1 : lf;
        line.assign(in.substr(0, end));
        conn->consume(lf + 1);
      } else {
        auto st = co_await conn->read_line(&line, 4096, w->sh->timeout_ms);
        if (st == io::IoStatus::eof) co_return kEof;
        if (st == io::IoStatus::timeout) co_return kTimeout;
        if (st == io::IoStatus::too_long) co_return kMalformed;
        if (st != io::IoStatus::ok) co_return kIoError;
      }
      auto state = parser.feed(line);
      if (state == smtp::ReplyParser::State::complete) co_return parser.reply().code;
      if (state == smtp::ReplyParser::State::malformed) co_return kMalformed;
    }
  }

  io::Task<int> command(std::string_view text) {
    conn->write(text);
    co_return co_await reply();
  }

  void drop() {
    conn.reset();
    on_connection = 0;
  }

  io::Task<void> quit() {
    if (!conn) co_return;
    conn->write("QUIT\r\n");
    (void)co_await reply();
    drop();
  }

  // A reply that ends the connection for the claimed message: an I/O
  // failure (connection error) or a negative reply (its class).
  void end_with(const char* stage, int code) {
    if (code < 0) {
      w->error(std::string(stage) + ": " + failure_text(code));
      drop();
      return;
    }
    w->failed(code);
    if (code == 421) drop();
  }

  // Connect, banner, EHLO, STARTTLS, AUTH. False: the claimed message got
  // its outcome and there is no usable connection.
  io::Task<bool> open() {
    const Options& o = *w->sh->opt;
    Shared& sh = *w->sh;
    auto fd = io::client_socket(sh.endpoint);
    if (!fd) {
      ++w->stats.connect_failures;
      w->error("connect: " + fd.error());
      co_return false;
    }
    io::UniqueFd owned(fd.value());
    auto t0 = Clock::now();
    int rc = co_await w->loop->connect(owned.get(), sh.endpoint, sh.timeout_ms);
    if (rc < 0) {
      ++w->stats.connect_failures;
      w->error(std::string("connect: ") + (rc == -ECANCELED || rc == -ETIME ? "timeout" : std::strerror(-rc)));
      co_return false;
    }
    io::set_nodelay(owned.get());
    ++w->stats.connections_opened;
    w->stats.latency[kConnect].record(elapsed_us(t0));
    conn = std::make_unique<io::Connection>(*w->loop, std::move(owned));
    conn->set_write_timeout(sh.timeout_ms);
    auto t1 = Clock::now();
    int code = co_await reply();
    if (code > 0) w->stats.latency[kBanner].record(elapsed_us(t1));
    if (code != 220) {
      if (code >= 400) {
        w->failed(code);
        co_await quit();
      } else {
        w->error(code < 0 ? std::string("banner: ") + failure_text(code) : "banner: unexpected reply");
      }
      drop();
      co_return false;
    }
    smtp::EhloInfo info;
    if (!co_await hello(&info)) co_return false;
    if (o.starttls) {
      if (!info.starttls) {
        w->error("STARTTLS: not offered by the server");
        co_await quit();
        co_return false;
      }
      code = co_await command("STARTTLS\r\n");
      if (code != 220) {
        if (code >= 400) {
          end_with("STARTTLS", code);
          co_await quit();
        } else {
          w->error(code < 0 ? std::string("STARTTLS: ") + failure_text(code) : "STARTTLS: unexpected reply");
        }
        drop();
        co_return false;
      }
      conn->discard_input();
      if (co_await conn->start_tls(sh.tls, sh.timeout_ms) != io::IoStatus::ok) {
        w->error("TLS: handshake failed");
        drop();
        co_return false;
      }
      w->tls_used = true;
      if (!co_await hello(&info)) co_return false;
    }
    if (o.auth != AuthMethod::none && !co_await authenticate()) co_return false;
    pipelining = o.pipelining && info.pipelining;
    bdat = o.bdat && info.chunking;
    w->pipelining_used |= pipelining;
    co_return true;
  }

  io::Task<bool> hello(smtp::EhloInfo* info) {
    const Options& o = *w->sh->opt;
    cmd.assign("EHLO ").append(o.helo).append("\r\n");
    int code = co_await command(cmd);
    if (code >= 500 && code != 521) {  // an RFC 821 server: HELO, no extensions
      cmd.assign("HELO ").append(o.helo).append("\r\n");
      code = co_await command(cmd);
      *info = smtp::EhloInfo{};
    } else if (code == 250) {
      *info = smtp::parse_ehlo(parser.reply());
    }
    if (code == 250) co_return true;
    if (code >= 400) {
      w->failed(code);
      co_await quit();
    } else {
      w->error(code < 0 ? std::string("EHLO: ") + failure_text(code) : "EHLO: unexpected reply");
    }
    drop();
    co_return false;
  }

  io::Task<bool> authenticate() {
    const Options& o = *w->sh->opt;
    Shared& sh = *w->sh;
    int code;
    if (o.auth == AuthMethod::plain) {
      cmd.assign("AUTH PLAIN ").append(sh.auth_plain).append("\r\n");
      code = co_await command(cmd);
    } else {
      code = co_await command("AUTH LOGIN\r\n");
      if (code == 334) {
        cmd.assign(sh.auth_user).append("\r\n");
        code = co_await command(cmd);
      }
      if (code == 334) {
        cmd.assign(sh.auth_password).append("\r\n");
        code = co_await command(cmd);
      }
    }
    if (code == 235) co_return true;
    if (code >= 400) {
      w->failed(code);
      co_await quit();
    } else {
      w->error(code < 0 ? std::string("AUTH: ") + failure_text(code) : "AUTH: unexpected reply");
    }
    drop();
    co_return false;
  }

  // One transaction on an open connection; gives the message its outcome.
  io::Task<void> transaction(const Claim& c) {
    Worker& wk = *w;
    Shared& sh = *wk.sh;
    const Options& o = *sh.opt;
    uint64_t size = o.size.sample(wk.rng);
    int64_t sent_us = o.rate > 0 ? sh.start_unix_us + micros_between(sh.start, c.start) : loadkit::unix_micros();
    cmd.assign("MAIL FROM:<").append(o.from).append(">\r\n");
    size_t mail_end = cmd.size();
    to.clear();
    for (unsigned j = 0; j < o.recipients; ++j) {
      size_t from = to.size();
      if (j) to.append(", "), from += 2;
      expand_pattern(o.to, c.index * o.recipients + j, o.domains, &to);
      cmd.append("RCPT TO:<").append(std::string_view(to).substr(from)).append(">\r\n");
    }
    std::string_view padding = sh.factory->build(c.index, size, sent_us, o.from, to, wk.date_now(), &headers);
    uint64_t content = headers.size() + padding.size();
    if (bdat) wk.bdat_used = true;

    auto t_mail = Clock::now();
    bool mail_ok = false;
    unsigned rcpt_ok = 0;
    int failure = 0;  // the first negative reply of the envelope
    int code = 0;
    if (pipelining) {
      conn->write(cmd);
      if (bdat) {
        append_bdat(content);
        conn->write(headers);
        conn->write(padding);
      } else {
        conn->write("DATA\r\n");
      }
    } else {
      conn->write(std::string_view(cmd).substr(0, mail_end));
    }
    // MAIL
    code = co_await reply();
    // 421: the server closes now; the pipelined replies will not come.
    if (code < 0 || code == 421) co_return end_with("MAIL", code);
    mail_ok = code >= 200 && code < 300;
    if (!mail_ok) failure = code;
    if (!pipelining && !mail_ok) {
      end_with("MAIL", code);
      co_return;
    }
    // RCPT
    size_t pos = mail_end;
    for (unsigned j = 0; j < o.recipients; ++j) {
      if (!pipelining) {
        size_t next = cmd.find('\n', pos) + 1;
        conn->write(std::string_view(cmd).substr(pos, next - pos));
        pos = next;
      }
      code = co_await reply();
      if (code < 0 || code == 421) co_return end_with("RCPT", code);
      if (code >= 200 && code < 300) {
        ++rcpt_ok;
        ++wk.stats.recipients_accepted;
      } else {
        ++wk.stats.recipients_rejected;
        if (!failure) failure = code;
      }
    }
    wk.stats.latency[kEnvelope].record(elapsed_us(t_mail));
    if (!pipelining && rcpt_ok == 0) {
      end_with("RCPT", failure);
      if (conn && failure != 421) co_await reset();
      co_return;
    }
    auto t_data = pipelining ? t_mail : Clock::now();
    if (bdat) {
      if (!pipelining) {
        append_bdat(content);
        conn->write(headers);
        conn->write(padding);
      }
      code = co_await reply();
      if (code < 0) co_return end_with("BDAT", code);
    } else {
      if (!pipelining) conn->write("DATA\r\n");
      code = co_await reply();
      if (code < 0) co_return end_with("DATA", code);
      if (code == 354) {
        if (!mail_ok || rcpt_ok == 0) {
          // RFC 2920: a 354 despite no recipient; end the empty message.
          conn->write(".\r\n");
          int c2 = co_await reply();
          if (c2 < 0) co_return end_with("DATA", c2);
        } else {
          conn->write(headers);
          conn->write(padding);
          conn->write(".\r\n");
          code = co_await reply();
          if (code < 0) co_return end_with("content", code);
        }
      }
    }
    if (code > 0 && code != 354) wk.stats.latency[kData].record(elapsed_us(t_data));
    if (!mail_ok || rcpt_ok == 0) {
      end_with(mail_ok ? "RCPT" : "MAIL", failure);
      if (conn && mail_ok && failure != 421) co_await reset();
      co_return;
    }
    if (code >= 200 && code < 300) {
      wk.accepted(content, o.rate > 0 ? c.start : t_mail);
      co_return;
    }
    if (code == 354 || code < 400) {
      wk.error("DATA: unexpected reply");
      drop();
      co_return;
    }
    end_with(bdat ? "BDAT" : "DATA", code);
    // A DATA refused before the content leaves the envelope open; after a
    // refused BDAT, RFC 3030 asks for RSET.
    if (conn && code != 421) co_await reset();
  }

  void append_bdat(uint64_t content) {
    char buf[48];
    int n = std::snprintf(buf, sizeof buf, "BDAT %llu LAST\r\n", static_cast<unsigned long long>(content));
    conn->write(std::string_view(buf, static_cast<size_t>(n)));
  }

  io::Task<void> reset() {
    int code = co_await command("RSET\r\n");
    if (code < 0) drop();
  }
};

io::Task<void> run_client(Worker& w) {
  Client c(&w);
  const Options& o = *w.sh->opt;
  while (auto claim = w.claim()) {
    if (o.rate > 0) {
      int64_t wait_us = micros_between(Clock::now(), claim->start);
      if (wait_us >= 1000) co_await w.loop->sleep(wait_us / 1000);
    }
    if (!c.conn && !co_await c.open()) {
      if (!c.conn) co_await w.loop->sleep(10);  // do not spin on a refusing server
      continue;
    }
    co_await c.transaction(*claim);
    if (c.conn && o.per_connection && ++c.on_connection >= o.per_connection) co_await c.quit();
  }
  co_await c.quit();
  if (--w.live == 0) {
    w.finished = Clock::now();
    w.loop->stop();
  }
}

std::string fmt_count(uint64_t n) { return std::to_string(n); }

int run(const Options& opt_in) {
  Options o = opt_in;
  unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  unsigned threads = o.threads ? o.threads : std::min(2u, cpus);
  threads = std::min(threads, o.connections);

  Shared sh;
  sh.opt = &o;
  auto ep = io::parse_endpoint(o.target);
  if (!ep) {
    std::fprintf(stderr, "tern-bench: --target: %s\n", ep.error().c_str());
    return 2;
  }
  sh.endpoint = ep.value();
  if (o.starttls) {
    auto ctx = io::TlsContext::create_client();
    if (!ctx) {
      std::fprintf(stderr, "tern-bench: cannot start: TLS: %s\n", ctx.error().c_str());
      return 2;
    }
    sh.tls = ctx.value();
  }
  sh.auth_plain = auth_plain_response(o.user, o.password);
  sh.auth_user = smtp::base64_encode(o.user);
  sh.auth_password = smtp::base64_encode(o.password);
  sh.timeout_ms = static_cast<int64_t>(std::ceil(o.timeout_s * 1000));

  // Open the report files first: a bad path fails before the load, not after.
  struct FileClose {
    void operator()(FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<FILE, FileClose> json_file, plot_file;
  if (!o.json_path.empty()) {
    json_file.reset(std::fopen(o.json_path.c_str(), "w"));
    if (!json_file) {
      std::fprintf(stderr, "tern-bench: --json: cannot write %s: %s\n", o.json_path.c_str(), std::strerror(errno));
      return 2;
    }
  }
  if (!o.plot_path.empty()) {
    plot_file.reset(std::fopen(o.plot_path.c_str(), "w"));
    if (!plot_file) {
      std::fprintf(stderr, "tern-bench: --plot: cannot write %s: %s\n", o.plot_path.c_str(), std::strerror(errno));
      return 2;
    }
  }

  MessageFactory factory(o.size.max_size(), random_run_id());
  sh.factory = &factory;
  uint64_t seed = o.seed_given ? o.seed : std::random_device{}();

  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<Progress>> progress;
  for (unsigned t = 0; t < threads; ++t) {
    auto w = std::make_unique<Worker>();
    progress.push_back(std::make_unique<Progress>());
    w->sh = &sh;
    w->rng.seed(seed + 0x9E3779B97F4A7C15ULL * t);
    w->progress = progress.back().get();
    w->live = o.connections / threads + (t < o.connections % threads ? 1 : 0);
    workers.push_back(std::move(w));
  }

  std::latch ready(threads);
  std::atomic<bool> start_failed{false};
  std::string start_error;
  std::mutex error_mu;
  std::atomic<unsigned> running{threads};
  std::vector<std::thread> pool;
  // The clock starts once every loop exists.
  std::latch go(1);
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      name_this_thread("bench-" + std::to_string(t));
      Worker& w = *workers[t];
      auto loop = io::Loop::create();
      if (!loop) {
        std::lock_guard lock(error_mu);
        start_error = loop.error();
        start_failed = true;
      }
      ready.count_down();
      go.wait();
      if (!loop || start_failed) {
        running.fetch_sub(1);
        return;
      }
      w.loop = loop.value().get();
      unsigned n = w.live;
      for (unsigned i = 0; i < n; ++i) io::spawn(run_client(w));
      if (w.live > 0) w.loop->run();
      w.loop = nullptr;
      running.fetch_sub(1);
    });
  }
  ready.wait();
  std::signal(SIGINT, on_sigint);
  sh.start = Clock::now();
  sh.start_unix_us = loadkit::unix_micros();
  if (o.duration_s > 0)
    sh.deadline = sh.start + std::chrono::microseconds(static_cast<int64_t>(o.duration_s * 1e6));
  go.count_down();

  bool tty = !o.quiet && isatty(STDERR_FILENO);
  uint64_t last_done = 0;
  auto last_t = sh.start;
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 500 : 50));
    if (!tty || start_failed) continue;
    uint64_t done = 0;
    for (auto& p : progress) done += p->done.load(std::memory_order_relaxed);
    auto now = Clock::now();
    double dt = static_cast<double>(micros_between(last_t, now)) / 1e6;
    double rate = dt > 0 ? static_cast<double>(done - last_done) / dt : 0;
    last_done = done;
    last_t = now;
    std::string total = o.messages ? fmt_count(o.messages) : "-";
    double eta = 0;
    if (o.messages && rate > 0) eta = static_cast<double>(o.messages - std::min(done, o.messages)) / rate;
    if (sh.deadline) eta = std::max(0.0, static_cast<double>(micros_between(now, *sh.deadline)) / 1e6);
    std::fprintf(stderr, "\r%8.0f msg/s  %llu/%s  ETA %.0f s\x1b[K", rate, static_cast<unsigned long long>(done),
                 total.c_str(), eta);
  }
  for (auto& t : pool) t.join();
  if (tty) std::fprintf(stderr, "\r\x1b[K");
  if (start_failed) {
    std::fprintf(stderr, "tern-bench: cannot start the event loop: %s\n", start_error.c_str());
    return 2;
  }

  Stats total;
  RunInfo info;
  info.options = o;
  info.threads = threads;
  info.run_id = factory.run_id();
  Clock::time_point end = sh.start;
  for (auto& w : workers) {
    total.merge(w->stats);
    info.pipelining_used |= w->pipelining_used;
    info.bdat_used |= w->bdat_used;
    info.starttls_used |= w->tls_used;
    end = std::max(end, w->finished);
  }
  info.elapsed_s = static_cast<double>(micros_between(sh.start, end)) / 1e6;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  info.cpu_user_s = static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6;
  info.cpu_sys_s = static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6;

  if (!o.quiet) std::fputs(format_text(total, info).c_str(), stdout);
  bool ok = true;
  if (json_file) {
    std::string j = format_json(total, info);
    ok = std::fwrite(j.data(), 1, j.size(), json_file.get()) == j.size() && std::fflush(json_file.get()) == 0;
    if (!ok) std::fprintf(stderr, "tern-bench: --json: write to %s failed\n", o.json_path.c_str());
  }
  if (plot_file) {
    std::string s = render_svg(total, info);
    bool wrote = std::fwrite(s.data(), 1, s.size(), plot_file.get()) == s.size() && std::fflush(plot_file.get()) == 0;
    if (!wrote) std::fprintf(stderr, "tern-bench: --plot: write to %s failed\n", o.plot_path.c_str());
    ok = ok && wrote;
  }
  return ok ? 0 : 2;
}

}  // namespace
}  // namespace tern::bench

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto opt = tern::bench::parse_options(args);
  if (!opt) {
    std::fprintf(stderr, "tern-bench: %s\n", opt.error().c_str());
    return 2;
  }
  if (opt->help) {
    std::fputs(tern::bench::usage_text().c_str(), stdout);
    return 0;
  }
  return tern::bench::run(opt.value());
}
