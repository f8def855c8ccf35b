#include "mta/control_server.h"

#include <poll.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>

#include "mta/clock.h"
#include "mta/config.h"
#include "mta/io/accept_backoff.h"
#include "mta/log.h"
#include "mta/thread_cpu.h"
#include "queue/thread_name.h"

namespace tern {

namespace {

std::string iso_time(int64_t us) {
  if (us <= 0) return "";
  time_t secs = static_cast<time_t>(us / 1'000'000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string age_text(int64_t us) {
  int64_t s = us / 1'000'000;
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  if (s < 172800) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

std::string_view state_name(queue::RecipientState s) {
  switch (s) {
    case queue::RecipientState::pending: return "pending";
    case queue::RecipientState::delivered: return "delivered";
    case queue::RecipientState::failed: return "failed";
  }
  return "unknown";
}

std::string notify_text(uint8_t n) {
  if (n == 0) return "";
  if (n & queue::notify_never) return "NEVER";
  std::string s;
  auto add = [&](const char* w) { s += s.empty() ? w : std::string(",") + w; };
  if (n & queue::notify_success) add("SUCCESS");
  if (n & queue::notify_failure) add("FAILURE");
  if (n & queue::notify_delay) add("DELAY");
  return s;
}

std::vector<std::string> split_words(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  std::string w;
  while (in >> w) words.push_back(w);
  return words;
}

// The header section of a stored message (up to the first empty line).
std::string header_section(const std::string& body) {
  auto end = body.find("\r\n\r\n");
  return end == std::string::npos ? body : body.substr(0, end + 2);
}

}  // namespace

ControlServer::ControlServer(queue::Spool& spool, StatsSource stats, DeliveryControls delivery,
                             AccessControls access)
    : spool_(spool), stats_(std::move(stats)), delivery_(std::move(delivery)), access_(access) {}

ControlServer::~ControlServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (!path_.empty()) unlink(path_.c_str());
}

void ControlServer::start(io::UniqueFd listening, const std::string& socket_path) {
  path_ = socket_path;
  listen_fd_ = std::move(listening);
  thread_ = std::thread([this] {
    name_this_thread("tern-control");
    serve();
  });
}

Result<io::UniqueFd> ControlServer::listen(const std::string& socket_path) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) return Error{"control socket path too long: " + socket_path};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  io::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Error{std::string("control socket: ") + strerror(errno)};
  // A stale socket from a crashed ternd would make bind fail; another live
  // ternd answers connect, so refuse to steal its socket.
  io::UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
    return Error{"another ternd is running (its control socket " + socket_path + " answers)"};
  unlink(socket_path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return Error{"bind " + socket_path + ": " + strerror(errno)};
  chmod(socket_path.c_str(), 0600);  // administrators only
  if (::listen(fd.get(), 16) < 0) return Error{"listen " + socket_path + ": " + strerror(errno)};
  return fd;
}

void ControlServer::serve() {
  io::AcceptBackoff backoff;
  while (!stop_) {
    pollfd p{listen_fd_.get(), POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    io::UniqueFd client(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (client.get() < 0) {
      // Out of descriptors the connection stays queued and poll() reports
      // it again at once: wait for descriptors to come back instead (the
      // destructor's join waits at most one pause).
      if (const int error = errno; io::AcceptBackoff::is_shortage(error)) {
        const bool starts = !backoff.in_episode();
        const int64_t retry_ms = backoff.failed(io::AcceptBackoff::now_ms());
        if (starts)
          log::event("accept_paused",
                     {{"listener", "control"}, {"error", io::AcceptBackoff::error_name(error)}, {"retry_ms", retry_ms}});
        std::this_thread::sleep_for(std::chrono::milliseconds(retry_ms));
      }
      continue;
    }
    if (auto episode = backoff.succeeded(io::AcceptBackoff::now_ms()))
      log::event("accept_resumed",
                 {{"listener", "control"}, {"pauses", episode->pauses}, {"shortage_ms", episode->shortage_ms}});
    timeval tv{5, 0};  // a stuck ternctl must not wedge the control thread
    setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string request;
    char buf[512];
    while (request.find('\n') == std::string::npos && request.size() < 8192) {
      ssize_t n = read(client.get(), buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    auto nl = request.find('\n');
    if (nl == std::string::npos) continue;
    std::string response = handle(request.substr(0, nl));
    std::string_view out = response;
    while (!out.empty()) {
      ssize_t n = write(client.get(), out.data(), out.size());
      if (n <= 0) break;
      out.remove_prefix(static_cast<size_t>(n));
    }
  }
}

std::string ControlServer::handle(const std::string& request_line) {
  auto words = split_words(request_line);
  if (words.empty()) return "error empty request\n";
  const std::string& cmd = words[0];
  std::vector<std::string> args(words.begin() + 1, words.end());
  auto has_flag = [&](const char* f) {
    for (auto& a : args)
      if (a == f) return true;
    return false;
  };
  if (cmd == "queue") return "ok\n" + queue_listing(has_flag("--json"));
  if (cmd == "show") {
    if (args.empty()) return "error usage: show ID [--body]\n";
    return show(args[0], has_flag("--body"));
  }
  if (cmd == "hold" || cmd == "release" || cmd == "delete") {
    if (args.empty()) return "error usage: " + cmd + " ID...\n";
    return move_all(args, cmd);
  }
  if (cmd == "flush") {
    if (args.size() > 1) return "error usage: flush [ID|DOMAIN|@DOMAIN]\n";
    if (!delivery_.flush) return "error delivery is disabled (delivery.enabled = false)\n";
    Result<size_t> flushed = delivery_.flush(args.empty() ? std::string() : args[0]);
    if (!flushed) return "error " + flushed.error() + "\n";
    const size_t n = flushed.value();
    return "ok\n" + std::to_string(n) + " message" + (n == 1 ? "" : "s") + " to be tried now\n";
  }
  if (cmd == "hold-domain" || cmd == "release-domain") {
    if (args.size() != 1) return "error usage: " + cmd + " DOMAIN\n";
    if (!delivery_.hold_domain) return "error delivery is disabled (delivery.enabled = false)\n";
    const bool hold = cmd == "hold-domain";
    Result<size_t> r = delivery_.hold_domain(args[0], hold);
    if (!r) return "error " + r.error() + "\n";
    if (hold) return "ok\n" + args[0] + ": held\n";
    return "ok\n" + args[0] + ": released, " + std::to_string(r.value()) + " message" + (r.value() == 1 ? "" : "s") +
           " to be tried now\n";
  }
  if (cmd == "bounce") {
    if (args.empty()) return "error usage: bounce ID [RCPT...]\n";
    if (!delivery_.bounce) return "error delivery is disabled (delivery.enabled = false)\n";
    Result<size_t> r = delivery_.bounce(args[0], std::vector<std::string>(args.begin() + 1, args.end()));
    if (!r) return "error " + r.error() + "\n";
    return "ok\n" + args[0] + ": " + std::to_string(r.value()) + " recipient" + (r.value() == 1 ? "" : "s") +
           " failed, delivery status notification queued\n";
  }
  if (cmd == "popauth") return popauth(args);
  if (cmd == "stats") return "ok\n" + stats_report(has_flag("--json"));
  return "error unknown command: " + cmd + "\n";
}

// popauth list | add IP [MINUTES|DURATION] | del IP
std::string ControlServer::popauth(const std::vector<std::string>& args) {
  const char* usage = "error usage: popauth list | add IP [MINUTES] | del IP\n";
  if (args.empty()) return usage;
  if (!access_.pop_window) return "error the POP-before-SMTP window store is not available\n";
  const int64_t now = wall_clock_us();
  if (args[0] == "list" && args.size() == 1) {
    std::string out = "ok\n";
    for (const auto& e : access_.pop_window->list(now))
      out += e.ip + " until " + iso_time(e.until_us) + " (" + std::to_string((e.until_us - now) / 1'000'000) +
             " s left)\n";
    return out;
  }
  if (args[0] == "add" && (args.size() == 2 || args.size() == 3)) {
    // A number is minutes, as relay.pop_window; "90s" and the like are
    // durations (short windows for tests and trials).
    int64_t window_ms = int64_t(access_.pop_window_minutes) * 60'000;
    if (args.size() == 3) {
      const std::string& text = args[2];
      const bool minutes = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
      const std::optional<int64_t> ms =
          minutes ? (text.size() <= 5 ? std::optional<int64_t>(std::stoll(text) * 60'000) : std::nullopt)
                  : duration_ms_from_text(text);
      if (!ms || *ms <= 0 || *ms > 65'535LL * 60'000) return "error the window must be 1-65535 minutes\n";
      window_ms = *ms;
    }
    Status added = access_.pop_window->add(args[1], now + window_ms * 1000, now);
    if (!added) return "error " + added.error() + "\n";
    log::event("popauth_added", {{"client", args[1]}, {"seconds", window_ms / 1000}, {"by", "ternctl"}});
    return "ok\n" + args[1] + " may relay for " + std::to_string(window_ms / 1000) + " s\n";
  }
  if (args[0] == "del" && args.size() == 2) {
    Status removed = access_.pop_window->remove(args[1]);
    if (!removed) return "error " + removed.error() + "\n";
    log::event("popauth_removed", {{"client", args[1]}, {"by", "ternctl"}});
    return "ok\n" + args[1] + " removed\n";
  }
  return usage;
}

// Counters as "key value" lines (scripts split each line in two) or as one
// JSON object: spool counters and the StatsSource's at the top level, then
// messages per queue and CPU time per thread name.
std::string ControlServer::stats_report(bool json) {
  const queue::SpoolStats s = spool_.stats();
  std::vector<std::pair<std::string, uint64_t>> counters{
      {"commits", s.commits},       {"batches", s.batches},
      {"wal_syncs", s.wal_syncs},   {"chunk_writes", s.chunk_writes},
      {"reclaims", s.reclaims},     {"reclaim_failures", s.reclaim_failures},
      {"reclaimed_bytes", s.reclaimed_bytes}, {"finished_log_bytes", s.finished_log_bytes}};
  for (auto& counter : stats_()) counters.push_back(std::move(counter));
  const std::vector<ThreadCpu> threads = thread_cpu_by_name();
  std::string out;
  if (!json) {
    for (const auto& [key, value] : counters) out += key + " " + std::to_string(value) + "\n";
    for (size_t i = 0; i < queue::kAllQueues.size(); ++i)
      out += "queue." + std::string(queue::to_string(queue::kAllQueues[i])) + " " + std::to_string(s.queued[i]) + "\n";
    for (const ThreadCpu& t : threads) {
      const std::string prefix = "thread." + t.name + ".";
      out += prefix + "threads " + std::to_string(t.threads) + "\n";
      out += prefix + "user_ms " + std::to_string(t.user_ms) + "\n";
      out += prefix + "sys_ms " + std::to_string(t.sys_ms) + "\n";
    }
    return out;
  }
  out = "{";
  for (const auto& [key, value] : counters) out += log::json_quote(key) + ":" + std::to_string(value) + ",";
  out += "\"queues\":{";
  for (size_t i = 0; i < queue::kAllQueues.size(); ++i) {
    if (i) out += ",";
    out += log::json_quote(queue::to_string(queue::kAllQueues[i])) + ":" + std::to_string(s.queued[i]);
  }
  out += "},\"threads\":[";
  for (size_t i = 0; i < threads.size(); ++i) {
    const ThreadCpu& t = threads[i];
    if (i) out += ",";
    out += "{\"name\":" + log::json_quote(t.name) + ",\"threads\":" + std::to_string(t.threads) +
           ",\"user_ms\":" + std::to_string(t.user_ms) + ",\"sys_ms\":" + std::to_string(t.sys_ms) + "}";
  }
  out += "]}\n";
  return out;
}

std::string ControlServer::queue_listing(bool json) {
  auto all = spool_.list();
  int64_t now = wall_clock_us();
  std::string out;
  if (json) {
    out = "[";
    bool first = true;
    for (const auto& e : all) {
      if (!first) out += ",";
      first = false;
      out += "\n{\"id\":" + log::json_quote(e.id);
      out += ",\"queue\":" + log::json_quote(queue::to_string(e.queue));
      out += ",\"size\":" + std::to_string(e.body_size);
      out += ",\"arrival\":" + log::json_quote(iso_time(e.arrival_us));
      out += ",\"age_seconds\":" + std::to_string((now - e.arrival_us) / 1'000'000);
      out += ",\"sender\":" + log::json_quote(e.sender);
      out += ",\"recipients\":[";
      for (size_t i = 0; i < e.recipients.size(); ++i) {
        const auto& r = e.recipients[i];
        if (i) out += ",";
        out += "{\"address\":" + log::json_quote(r.address) + ",\"state\":" + log::json_quote(state_name(r.state)) +
               ",\"notify\":" + log::json_quote(notify_text(r.notify)) + ",\"orcpt\":" + log::json_quote(r.orcpt) +
               ",\"last_error\":" + log::json_quote(r.last_error) + "}";
      }
      out += "],\"attempts\":" + std::to_string(e.attempts);
      out += ",\"next_attempt\":" + log::json_quote(iso_time(e.next_attempt_us));
      out += ",\"last_error\":" + log::json_quote(e.last_error);
      out += ",\"message_id\":" + log::json_quote(e.message_id);
      out += ",\"envid\":" + log::json_quote(e.envid);
      out += ",\"ret\":" + log::json_quote(e.ret);
      out += ",\"body\":" + log::json_quote(e.body_type);
      out += std::string(",\"smtputf8\":") + (e.smtputf8 ? "true" : "false");
      out += ",\"client\":" + log::json_quote(e.client_ip) + "}";
    }
    out += "\n]\n";
    return out;
  }
  if (all.empty()) return "Queue is empty\n";
  char line[256];
  snprintf(line, sizeof line, "%-16s  %-10s  %10s  %6s  %s\n", "ID", "QUEUE", "SIZE", "AGE", "SENDER / RECIPIENTS");
  out += line;
  uint64_t total = 0;
  for (const auto& e : all) {
    std::string q(queue::to_string(e.queue));
    snprintf(line, sizeof line, "%-16s  %-10s  %10llu  %6s  <%s>\n", e.id.c_str(), q.c_str(),
             static_cast<unsigned long long>(e.body_size), age_text(now - e.arrival_us).c_str(), e.sender.c_str());
    out += line;
    total += e.body_size;
    for (const auto& r : e.recipients) out += "        -> <" + r.address + "> " + std::string(state_name(r.state)) + "\n";
    if (e.next_attempt_us > now) out += "        next attempt " + iso_time(e.next_attempt_us) + "\n";
    if (!e.last_error.empty()) out += "        last error: " + e.last_error + "\n";
  }
  out += "-- " + std::to_string(total / 1024) + " KiB in " + std::to_string(all.size()) + " message" +
         (all.size() == 1 ? "" : "s") + "\n";
  return out;
}

std::string ControlServer::show(const std::string& id, bool body) {
  auto env = spool_.get(id);
  if (!env) return "error no such message: " + id + "\n";
  auto content = spool_.read_body(id);
  if (!content) return "error " + id + ": " + content.error() + "\n";
  const auto& e = *env;
  std::string out = "ok\n";
  out += "id: " + e.id + "\n";
  out += "queue: " + std::string(queue::to_string(e.queue)) + "\n";
  out += "arrival: " + iso_time(e.arrival_us) + "\n";
  out += "client: " + e.client_ip + " (" + e.client_helo + ") " + e.protocol + "\n";
  out += "sender: <" + e.sender + ">\n";
  for (const auto& r : e.recipients) {
    out += "recipient: <" + r.address + "> " + std::string(state_name(r.state));
    if (r.notify) out += " NOTIFY=" + notify_text(r.notify);
    if (!r.orcpt.empty()) out += " ORCPT=" + r.orcpt;
    out += "\n";
  }
  if (!e.body_type.empty()) out += "body: " + e.body_type + "\n";
  if (e.smtputf8) out += "smtputf8: yes\n";
  if (!e.ret.empty()) out += "ret: " + e.ret + "\n";
  if (!e.envid.empty()) out += "envid: " + e.envid + "\n";
  out += "size: " + std::to_string(e.body_size) + "\n";
  out += "attempts: " + std::to_string(e.attempts) + "\n";
  if (!e.last_error.empty()) out += "last error: " + e.last_error + "\n";
  out += "\n";
  out += body ? content.value() : header_section(content.value());
  return out;
}

std::string ControlServer::move_all(const std::vector<std::string>& ids, const std::string& verb) {
  std::string out;
  bool all_ok = true;
  for (const auto& id : ids) {
    auto env = spool_.get(id);
    if (!env) {
      out += id + ": no such message\n";
      all_ok = false;
      continue;
    }
    Status st;
    if (verb == "delete") {
      st = spool_.remove_sync(id, "deleted by the administrator");
    } else if (verb == "hold") {
      st = spool_.move_sync(id, queue::QueueName::hold, env->next_attempt_us);
    } else if (env->queue != queue::QueueName::hold) {
      out += id + ": not held\n";
      all_ok = false;
      continue;
    } else {
      st = spool_.move_sync(id, queue::QueueName::incoming, wall_clock_us());
    }
    if (!st) {
      out += id + ": " + st.error() + "\n";
      all_ok = false;
      continue;
    }
    log::event(verb == "delete" ? "deleted" : (verb == "hold" ? "held" : "released"),
               {{"qid", id}, {"by", "ternctl"}});
    out += id + ": " + (verb == "delete" ? "deleted" : (verb == "hold" ? "held" : "released")) + "\n";
  }
  return (all_ok ? "ok\n" : "error some messages were not changed\n") + out;
}

}  // namespace tern
