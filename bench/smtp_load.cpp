// smtp_load: a closed-loop SMTP load generator for the acceptance benchmark
// (bench/acceptance.sh), used until the full tern-bench tool exists.
//
// One thread per connection, blocking-style I/O bounded by poll() deadlines,
// TCP_NODELAY. Each connection: 220 banner, EHLO once, then up to
// --per-connection transactions (MAIL / RCPT / DATA / body / ".") before
// QUIT and a reconnect. The run stops after --messages transactions in total
// or --max-seconds, whichever comes first.
//
// Every transaction gets exactly one outcome: 2xx (accepted), 4xx, 5xx (the
// first non-2xx reply of the transaction, or the final reply to the data) or
// a connection error (connect/read/write failure, timeout, unparsable reply).
// Latency is measured from the write of the message data (ending with
// CRLF.CRLF) to the reply to it, for accepted messages.
//
// Exit status: 0 when the run completed, whatever the replies were;
// 2 for bad arguments, 3 when the target could not be resolved or no
// connection could ever be established (the run could not happen).
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  std::string port = "2525";
  std::string target_text = "127.0.0.1:2525";
  uint64_t messages = 10'000;
  unsigned connections = 10;
  uint64_t size = 1024;
  uint64_t per_connection = 100;
  double max_seconds = 120;
  std::string json_path;
  std::string ehlo_name = "load.test";
  bool quiet = false;
};

void usage(FILE* f) {
  std::fputs(
      "usage: smtp_load [options]\n"
      "  --target HOST:PORT     server to load ([v6addr]:PORT for IPv6; default 127.0.0.1:2525)\n"
      "  --messages N           transactions in total (default 10000)\n"
      "  --connections C        concurrent connections, one thread each (default 10)\n"
      "  --size BYTES           message size incl. headers (default 1024)\n"
      "  --per-connection K     messages per connection before QUIT + reconnect (default 100)\n"
      "  --max-seconds S        hard stop (default 120)\n"
      "  --json FILE            also write the results as JSON to FILE\n"
      "  --ehlo NAME            EHLO argument (default load.test)\n"
      "  --quiet                no progress output on stderr\n"
      "exit: 0 run completed (whatever the replies), 2 bad arguments,\n"
      "      3 target unresolvable or no connection could be established\n",
      f);
}

bool parse_u64(const char* s, uint64_t& out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno || *end || s[0] == '-') return false;
  out = v;
  return true;
}

bool parse_target(std::string_view t, Options& o) {
  std::string_view host, port;
  if (!t.empty() && t.front() == '[') {
    auto close = t.find(']');
    if (close == std::string_view::npos || close + 1 >= t.size() || t[close + 1] != ':') return false;
    host = t.substr(1, close - 1);
    port = t.substr(close + 2);
  } else {
    auto colon = t.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = t.substr(0, colon);
    port = t.substr(colon + 1);
  }
  if (host.empty() || port.empty()) return false;
  o.host = std::string(host);
  o.port = std::string(port);
  o.target_text = std::string(t);
  return true;
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "smtp_load: %s needs a value\n", argv[i]);
        return nullptr;
      }
      return argv[++i];
    };
    uint64_t n = 0;
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--target") {
      const char* v = value();
      if (!v || !parse_target(v, o)) {
        std::fprintf(stderr, "smtp_load: bad --target (want HOST:PORT)\n");
        return std::nullopt;
      }
    } else if (a == "--messages") {
      if (!parse_u64(value(), n) || n == 0) return std::nullopt;
      o.messages = n;
    } else if (a == "--connections") {
      if (!parse_u64(value(), n) || n == 0 || n > 10'000) return std::nullopt;
      o.connections = static_cast<unsigned>(n);
    } else if (a == "--size") {
      if (!parse_u64(value(), n) || n > (1ULL << 30)) return std::nullopt;
      o.size = n;
    } else if (a == "--per-connection") {
      if (!parse_u64(value(), n) || n == 0) return std::nullopt;
      o.per_connection = n;
    } else if (a == "--max-seconds") {
      const char* v = value();
      if (!v) return std::nullopt;
      char* end = nullptr;
      double d = std::strtod(v, &end);
      if (*end || !(d > 0)) return std::nullopt;
      o.max_seconds = d;
    } else if (a == "--json") {
      const char* v = value();
      if (!v) return std::nullopt;
      o.json_path = v;
    } else if (a == "--ehlo") {
      const char* v = value();
      if (!v) return std::nullopt;
      o.ehlo_name = v;
    } else if (a == "--quiet") {
      o.quiet = true;
    } else {
      std::fprintf(stderr, "smtp_load: unknown option %s\n", argv[i]);
      return std::nullopt;
    }
  }
  return o;
}

// ---------------------------------------------------------------------------
// Shared run state.

struct Shared {
  const Options* opt = nullptr;
  std::vector<sockaddr_storage> addrs;
  std::vector<socklen_t> addr_lens;
  Clock::time_point start;
  Clock::time_point deadline;
  std::atomic<uint64_t> next_message{0};  // claimed transaction indices
  std::atomic<uint64_t> done{0};          // transactions with an outcome
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> connects_ok{0};
  std::mutex err_mu;
  std::map<std::string, uint64_t> error_kinds;  // "connect: Connection refused" -> n
};

struct ThreadStats {
  uint64_t ok2xx = 0, t4xx = 0, p5xx = 0, conn_err = 0, aborted = 0;
  uint64_t connections = 0;
  uint64_t bytes_sent = 0;
  std::vector<uint32_t> lat_us;       // DATA-end -> reply, accepted only
  std::vector<uint32_t> txn_lat_us;   // MAIL -> final reply, accepted only
  std::map<int, uint64_t> reject_codes;  // non-2xx final codes
};

void note_error(Shared& sh, const std::string& kind) {
  std::lock_guard lk(sh.err_mu);
  ++sh.error_kinds[kind];
}

enum class IoStatus { ok, error, timeout, closed };

// A connection with a small read buffer; all waits end at the run deadline.
class Conn {
 public:
  explicit Conn(Shared& sh) : sh_(sh) {}
  ~Conn() { close_fd(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  void close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    rbuf_.clear();
    rpos_ = 0;
  }

  // Non-blocking connect bounded by the deadline (and at most 10 s).
  bool connect_to(size_t addr_index, std::string& err) {
    close_fd();
    const auto& ss = sh_.addrs[addr_index];
    fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      err = std::string("socket: ") + std::strerror(errno);
      return false;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&ss), sh_.addr_lens[addr_index]);
    if (rc != 0 && errno != EINPROGRESS) {
      err = std::string("connect: ") + std::strerror(errno);
      close_fd();
      return false;
    }
    if (rc != 0) {
      auto limit = std::min(sh_.deadline, Clock::now() + std::chrono::seconds(10));
      IoStatus st = wait(POLLOUT, limit);
      if (st != IoStatus::ok) {
        err = st == IoStatus::timeout ? "connect: timeout" : "connect: poll failed";
        close_fd();
        return false;
      }
      int soerr = 0;
      socklen_t len = sizeof soerr;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len);
      if (soerr != 0) {
        err = std::string("connect: ") + std::strerror(soerr);
        close_fd();
        return false;
      }
    }
    return true;
  }

  IoStatus write_all(std::string_view data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        IoStatus st = wait(POLLOUT, sh_.deadline);
        if (st != IoStatus::ok) return st;
        continue;
      }
      last_errno_ = errno;
      return IoStatus::error;
    }
    return IoStatus::ok;
  }

  // Reads one complete (possibly multi-line) reply. Returns its code (from
  // the last line) in `code`, the full text in `text`. A line that does not
  // start with three digits followed by ' ', '-' or the line end is a
  // protocol error (IoStatus::error with code = -1).
  IoStatus read_reply(int& code, std::string* text = nullptr) {
    code = 0;
    if (text) text->clear();
    int first_code = -1;
    for (;;) {
      std::string_view line;
      IoStatus st = read_line(line);
      if (st != IoStatus::ok) return st;
      if (text) {
        text->append(line);
        text->append("\n");
      }
      if (line.size() < 3 || !isdigit3(line)) {
        code = -1;
        return IoStatus::error;
      }
      int c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
      if (first_code < 0) first_code = c;
      if (c != first_code) {  // RFC 5321 §4.2.1: every line carries the same code
        code = -1;
        return IoStatus::error;
      }
      if (line.size() == 3 || line[3] == ' ') {
        code = c;
        return IoStatus::ok;
      }
      if (line[3] != '-') {
        code = -1;
        return IoStatus::error;
      }
    }
  }

  int last_errno() const { return last_errno_; }

 private:
  static bool isdigit3(std::string_view l) {
    return l[0] >= '0' && l[0] <= '9' && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' && l[2] <= '9';
  }

  IoStatus wait(short events, Clock::time_point limit) {
    for (;;) {
      auto now = Clock::now();
      if (now >= limit) return IoStatus::timeout;
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit - now).count() + 1;
      pollfd p{fd_, events, 0};
      int rc = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
      if (rc < 0) {
        if (errno == EINTR) continue;
        return IoStatus::error;
      }
      if (rc == 0) continue;  // re-check the deadline
      if (p.revents & (events | POLLERR | POLLHUP)) return IoStatus::ok;
    }
  }

  // A line without its CRLF (LF alone is accepted too). Max 64 KiB.
  IoStatus read_line(std::string_view& line) {
    for (;;) {
      auto nl = rbuf_.find('\n', rpos_);
      if (nl != std::string::npos) {
        size_t end = nl;
        if (end > rpos_ && rbuf_[end - 1] == '\r') --end;
        line_.assign(rbuf_, rpos_, end - rpos_);
        rpos_ = nl + 1;
        if (rpos_ == rbuf_.size()) {
          rbuf_.clear();
          rpos_ = 0;
        }
        line = line_;
        return IoStatus::ok;
      }
      if (rbuf_.size() - rpos_ > 65536) return IoStatus::error;
      if (rpos_ > 0) {
        rbuf_.erase(0, rpos_);
        rpos_ = 0;
      }
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        rbuf_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return IoStatus::closed;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        IoStatus st = wait(POLLIN, sh_.deadline);
        if (st != IoStatus::ok) return st;
        continue;
      }
      last_errno_ = errno;
      return IoStatus::error;
    }
  }

  Shared& sh_;
  int fd_ = -1;
  std::string rbuf_;
  size_t rpos_ = 0;
  std::string line_;
  int last_errno_ = 0;
};

uint32_t us_since(Clock::time_point t0) {
  auto d = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
  return d < 0 ? 0 : static_cast<uint32_t>(std::min<int64_t>(d, UINT32_MAX));
}

std::string io_error_kind(const char* stage, IoStatus st, int code, int err) {
  std::string k = stage;
  switch (st) {
    case IoStatus::timeout: return k + ": timeout";
    case IoStatus::closed: return k + ": connection closed by server";
    case IoStatus::error:
      if (code == -1) return k + ": malformed reply";
      return k + ": " + (err ? std::strerror(err) : "I/O error");
    case IoStatus::ok: break;
  }
  return k;
}

// The message text (without the terminating "." line): headers with a
// Message-ID and an X-Bench-Sent timestamp, then 76-character lines of
// filler until `size` octets (approximately, never less than the headers).
void build_message(std::string& out, uint64_t index, unsigned thread_id, uint64_t size,
                   const std::string& filler_line) {
  out.clear();
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  char hdr[768];
  int n = std::snprintf(hdr, sizeof hdr,
                        "From: <bench@load.test>\r\n"
                        "To: <rcpt%" PRIu64 "@sink.test>\r\n"
                        "Subject: smtp_load message %" PRIu64 "\r\n"
                        "Message-ID: <%" PRIu64 ".%u.%lld.%06ld@load.test>\r\n"
                        "X-Bench-Sent: %lld.%06ld\r\n"
                        "\r\n",
                        index, index, index, thread_id, static_cast<long long>(tv.tv_sec),
                        static_cast<long>(tv.tv_usec), static_cast<long long>(tv.tv_sec),
                        static_cast<long>(tv.tv_usec));
  out.append(hdr, static_cast<size_t>(n));
  // filler_line is 76 characters + CRLF; the last line is shortened to fit.
  while (out.size() < size) {
    uint64_t left = size - out.size();
    if (left >= filler_line.size()) {
      out.append(filler_line);
    } else if (left >= 3) {
      out.append(filler_line, 0, left - 2);
      out.append("\r\n");
    } else {
      out.append("x\r\n");  // can't end a line in fewer than 3 octets
    }
  }
}

void worker(Shared& sh, unsigned tid, ThreadStats& st) {
  const Options& o = *sh.opt;
  Conn c(sh);
  std::string filler;
  for (int i = 0; i < 76; ++i) filler.push_back(static_cast<char>('a' + (i + tid) % 26));
  filler.append("\r\n");
  std::string msg, cmd;
  msg.reserve(o.size + 1024);
  size_t addr_index = 0;
  unsigned consecutive_connect_failures = 0;

  auto time_left = [&] { return Clock::now() < sh.deadline && !sh.stop.load(std::memory_order_relaxed); };
  // A claimed transaction index (claimed before connecting, so a connection
  // failure is charged to a message and the run stays bounded).
  bool have_pending = false;
  uint64_t pending = 0;
  // Claims one transaction index; false when the run is over.
  auto claim = [&]() -> bool {
    if (have_pending) return true;
    if (!time_left()) return false;
    uint64_t idx = sh.next_message.fetch_add(1, std::memory_order_relaxed);
    if (idx >= o.messages) return false;
    pending = idx;
    have_pending = true;
    return true;
  };

  for (;;) {
    if (!claim()) break;

    // --- connect, banner, EHLO ---
    std::string err;
    if (!c.connect_to(addr_index, err)) {
      note_error(sh, err);
      ++st.conn_err;
      sh.done.fetch_add(1, std::memory_order_relaxed);
      have_pending = false;
      addr_index = (addr_index + 1) % sh.addrs.size();
      ++consecutive_connect_failures;
      // Back off a little so a refused port doesn't spin the CPU.
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100u, 5u * consecutive_connect_failures)));
      continue;
    }
    ++st.connections;
    sh.connects_ok.fetch_add(1, std::memory_order_relaxed);
    int code = 0;
    IoStatus s = c.read_reply(code);
    const char* stage = "banner";
    if (s == IoStatus::ok && code / 100 == 2) {
      cmd = "EHLO " + o.ehlo_name + "\r\n";
      stage = "EHLO";
      s = c.write_all(cmd);
      if (s == IoStatus::ok) s = c.read_reply(code);
    }
    if (s != IoStatus::ok) {
      note_error(sh, io_error_kind(stage, s, code, c.last_errno()));
      if (s == IoStatus::timeout && !time_left()) {
        ++st.aborted;  // the run ended, not the server's fault
      } else {
        ++st.conn_err;
      }
      sh.done.fetch_add(1, std::memory_order_relaxed);
      have_pending = false;
      c.close_fd();
      continue;
    }
    if (code / 100 != 2) {
      // Banner or EHLO refused (e.g. 421/554): the claimed message fails with that code.
      ++(code / 100 == 4 ? st.t4xx : st.p5xx);
      ++st.reject_codes[code];
      sh.done.fetch_add(1, std::memory_order_relaxed);
      have_pending = false;
      c.write_all("QUIT\r\n");
      c.close_fd();
      ++consecutive_connect_failures;
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100u, 5u * consecutive_connect_failures)));
      continue;
    }
    consecutive_connect_failures = 0;

    // --- transactions on this connection ---
    bool conn_ok = true;
    for (uint64_t k = 0; k < o.per_connection && conn_ok; ++k) {
      if (!claim()) break;
      uint64_t idx = pending;
      have_pending = false;

      auto t_txn = Clock::now();
      int final_code = 0;
      IoStatus fs = IoStatus::ok;
      const char* fstage = "MAIL";
      bool in_txn = false;  // a MAIL was accepted: RSET needed after a rejection

      // MAIL
      s = c.write_all("MAIL FROM:<bench@load.test>\r\n");
      if (s == IoStatus::ok) s = c.read_reply(code);
      if (s != IoStatus::ok) {
        fs = s;
      } else if (code / 100 != 2) {
        final_code = code;
      } else {
        in_txn = true;
        fstage = "RCPT";
        char rcpt[96];
        std::snprintf(rcpt, sizeof rcpt, "RCPT TO:<rcpt%" PRIu64 "@sink.test>\r\n", idx);
        s = c.write_all(rcpt);
        if (s == IoStatus::ok) s = c.read_reply(code);
        if (s != IoStatus::ok) {
          fs = s;
        } else if (code / 100 != 2) {
          final_code = code;
        } else {
          fstage = "DATA";
          s = c.write_all("DATA\r\n");
          if (s == IoStatus::ok) s = c.read_reply(code);
          if (s != IoStatus::ok) {
            fs = s;
          } else if (code != 354) {
            final_code = code / 100 == 3 ? 500 + code % 100 : code;  // 3xx other than 354: treat as failure
            if (code / 100 == 2) final_code = 554;  // 2xx to DATA without data: protocol confusion
          } else {
            fstage = "end of data";
            build_message(msg, idx, tid, o.size, filler);
            msg.append(".\r\n");
            auto t_data = Clock::now();
            s = c.write_all(msg);
            if (s == IoStatus::ok) s = c.read_reply(code);
            if (s != IoStatus::ok) {
              fs = s;
            } else {
              final_code = code;
              in_txn = false;  // the transaction is over whatever the reply
              if (code / 100 == 2) {
                st.lat_us.push_back(us_since(t_data));
                st.txn_lat_us.push_back(us_since(t_txn));
              }
            }
            st.bytes_sent += msg.size();
          }
        }
      }

      sh.done.fetch_add(1, std::memory_order_relaxed);
      if (fs != IoStatus::ok) {
        if (fs == IoStatus::timeout && !time_left()) {
          ++st.aborted;
        } else {
          ++st.conn_err;
          note_error(sh, io_error_kind(fstage, fs, code, c.last_errno()));
        }
        conn_ok = false;
        break;
      }
      switch (final_code / 100) {
        case 2: ++st.ok2xx; break;
        case 4: ++st.t4xx; ++st.reject_codes[final_code]; break;
        default: ++st.p5xx; ++st.reject_codes[final_code]; break;
      }
      if (final_code == 421) {  // the server is closing the connection
        conn_ok = false;
        break;
      }
      if (in_txn) {
        int rc = 0;
        if (c.write_all("RSET\r\n") != IoStatus::ok || c.read_reply(rc) != IoStatus::ok) {
          conn_ok = false;
          break;
        }
      }
    }
    if (conn_ok && time_left()) {
      // Polite QUIT; its reply is awaited but doesn't count.
      if (c.write_all("QUIT\r\n") == IoStatus::ok) {
        int rc = 0;
        c.read_reply(rc);
      }
    }
    c.close_fd();
  }
}

double pct(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)] / 1000.0;
}

std::string json_escape(std::string_view s) {
  std::string r;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      r.push_back('\\');
      r.push_back(ch);
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", ch);
      r += b;
    } else {
      r.push_back(ch);
    }
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (!parsed) {
    usage(stderr);
    return 2;
  }
  const Options o = *parsed;

  Shared sh;
  sh.opt = &o;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &res);
  if (gai != 0) {
    std::fprintf(stderr, "smtp_load: cannot resolve %s: %s\n", o.target_text.c_str(), gai_strerror(gai));
    return 3;
  }
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    sockaddr_storage ss{};
    std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    sh.addrs.push_back(ss);
    sh.addr_lens.push_back(ai->ai_addrlen);
  }
  ::freeaddrinfo(res);
  if (sh.addrs.empty()) {
    std::fprintf(stderr, "smtp_load: no address for %s\n", o.target_text.c_str());
    return 3;
  }

  rusage ru0{};
  ::getrusage(RUSAGE_SELF, &ru0);
  sh.start = Clock::now();
  sh.deadline = sh.start + std::chrono::microseconds(static_cast<int64_t>(o.max_seconds * 1e6));

  std::vector<ThreadStats> stats(o.connections);
  std::vector<std::thread> threads;
  threads.reserve(o.connections);
  for (unsigned t = 0; t < o.connections; ++t) {
    try {
      threads.emplace_back(worker, std::ref(sh), t, std::ref(stats[t]));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "smtp_load: cannot start thread %u: %s\n", t, e.what());
      sh.stop = true;
      break;
    }
  }

  // Progress once a second on stderr.
  std::atomic<bool> finished{false};
  std::thread progress([&] {
    uint64_t last = 0;
    auto next = Clock::now() + std::chrono::seconds(1);
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (Clock::now() < next) continue;
      next += std::chrono::seconds(1);
      uint64_t d = sh.done.load();
      if (!o.quiet) {
        double el = std::chrono::duration<double>(Clock::now() - sh.start).count();
        std::fprintf(stderr, "smtp_load: %.0fs %" PRIu64 "/%" PRIu64 " done, %" PRIu64 "/s\n", el, d,
                     o.messages, d - last);
      }
      last = d;
    }
  });
  for (auto& th : threads) th.join();
  auto end = Clock::now();
  finished = true;
  progress.join();

  rusage ru1{};
  ::getrusage(RUSAGE_SELF, &ru1);
  auto tv_s = [](const timeval& a, const timeval& b) {
    return (b.tv_sec - a.tv_sec) + (b.tv_usec - a.tv_usec) / 1e6;
  };
  double cpu_user = tv_s(ru0.ru_utime, ru1.ru_utime);
  double cpu_sys = tv_s(ru0.ru_stime, ru1.ru_stime);

  ThreadStats total;
  for (auto& s : stats) {
    total.ok2xx += s.ok2xx;
    total.t4xx += s.t4xx;
    total.p5xx += s.p5xx;
    total.conn_err += s.conn_err;
    total.aborted += s.aborted;
    total.connections += s.connections;
    total.bytes_sent += s.bytes_sent;
    total.lat_us.insert(total.lat_us.end(), s.lat_us.begin(), s.lat_us.end());
    total.txn_lat_us.insert(total.txn_lat_us.end(), s.txn_lat_us.begin(), s.txn_lat_us.end());
    for (auto& [k, v] : s.reject_codes) total.reject_codes[k] += v;
  }
  std::sort(total.lat_us.begin(), total.lat_us.end());
  std::sort(total.txn_lat_us.begin(), total.txn_lat_us.end());
  double secs = std::chrono::duration<double>(end - sh.start).count();
  uint64_t attempted = total.ok2xx + total.t4xx + total.p5xx + total.conn_err + total.aborted;
  bool hit_time_limit = end >= sh.deadline && attempted < o.messages;
  double rate = secs > 0 ? total.ok2xx / secs : 0;
  double mean_ms = 0;
  for (auto v : total.lat_us) mean_ms += v;
  if (!total.lat_us.empty()) mean_ms = mean_ms / total.lat_us.size() / 1000.0;
  double lat_max = total.lat_us.empty() ? 0 : total.lat_us.back() / 1000.0;

  std::printf("target          %s\n", o.target_text.c_str());
  std::printf("connections     %u (x%" PRIu64 " msgs each), %" PRIu64 " opened\n", o.connections,
              o.per_connection, total.connections);
  std::printf("message size    %" PRIu64 " bytes\n", o.size);
  std::printf("attempted       %" PRIu64 " of %" PRIu64 "%s\n", attempted, o.messages,
              hit_time_limit ? " (stopped by --max-seconds)" : "");
  std::printf("accepted (2xx)  %" PRIu64 "\n", total.ok2xx);
  std::printf("temp fail (4xx) %" PRIu64 "\n", total.t4xx);
  std::printf("perm fail (5xx) %" PRIu64 "\n", total.p5xx);
  std::printf("conn errors     %" PRIu64 "\n", total.conn_err);
  if (total.aborted) std::printf("cut by deadline %" PRIu64 "\n", total.aborted);
  for (auto& [k, v] : total.reject_codes) std::printf("  reply %d: %" PRIu64 "\n", k, v);
  {
    std::lock_guard lk(sh.err_mu);
    for (auto& [k, v] : sh.error_kinds) std::printf("  error \"%s\": %" PRIu64 "\n", k.c_str(), v);
  }
  std::printf("seconds         %.3f\n", secs);
  std::printf("accepted msg/s  %.1f\n", rate);
  std::printf("latency ms      p50 %.3f  p99 %.3f  max %.3f  mean %.3f  (end of data -> reply)\n",
              pct(total.lat_us, 50), pct(total.lat_us, 99), lat_max, mean_ms);
  std::printf("txn latency ms  p50 %.3f  p99 %.3f  (MAIL -> final reply)\n", pct(total.txn_lat_us, 50),
              pct(total.txn_lat_us, 99));
  std::printf("client cpu s    user %.3f  sys %.3f\n", cpu_user, cpu_sys);

  if (!o.json_path.empty()) {
    FILE* f = std::fopen(o.json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "smtp_load: cannot write %s: %s\n", o.json_path.c_str(), std::strerror(errno));
    } else {
      std::fprintf(f, "{\n");
      std::fprintf(f, "  \"target\": \"%s\",\n", json_escape(o.target_text).c_str());
      std::fprintf(f, "  \"connections\": %u,\n", o.connections);
      std::fprintf(f, "  \"per_connection\": %" PRIu64 ",\n", o.per_connection);
      std::fprintf(f, "  \"connections_opened\": %" PRIu64 ",\n", total.connections);
      std::fprintf(f, "  \"message_size\": %" PRIu64 ",\n", o.size);
      std::fprintf(f, "  \"messages_requested\": %" PRIu64 ",\n", o.messages);
      std::fprintf(f, "  \"max_seconds\": %.3f,\n", o.max_seconds);
      std::fprintf(f, "  \"stopped_by_time\": %s,\n", hit_time_limit ? "true" : "false");
      std::fprintf(f, "  \"attempted\": %" PRIu64 ",\n", attempted);
      std::fprintf(f, "  \"accepted\": %" PRIu64 ",\n", total.ok2xx);
      std::fprintf(f, "  \"temp_failed\": %" PRIu64 ",\n", total.t4xx);
      std::fprintf(f, "  \"perm_failed\": %" PRIu64 ",\n", total.p5xx);
      std::fprintf(f, "  \"connection_errors\": %" PRIu64 ",\n", total.conn_err);
      std::fprintf(f, "  \"cut_by_deadline\": %" PRIu64 ",\n", total.aborted);
      std::fprintf(f, "  \"reply_codes\": {");
      bool first = true;
      for (auto& [k, v] : total.reject_codes) {
        std::fprintf(f, "%s\"%d\": %" PRIu64, first ? "" : ", ", k, v);
        first = false;
      }
      std::fprintf(f, "},\n");
      std::fprintf(f, "  \"errors\": {");
      first = true;
      {
        std::lock_guard lk(sh.err_mu);
        for (auto& [k, v] : sh.error_kinds) {
          std::fprintf(f, "%s\"%s\": %" PRIu64, first ? "" : ", ", json_escape(k).c_str(), v);
          first = false;
        }
      }
      std::fprintf(f, "},\n");
      std::fprintf(f, "  \"seconds\": %.6f,\n", secs);
      std::fprintf(f, "  \"messages_per_second\": %.3f,\n", rate);
      std::fprintf(f, "  \"bytes_sent\": %" PRIu64 ",\n", total.bytes_sent);
      std::fprintf(f,
                   "  \"latency_ms\": {\"p50\": %.4f, \"p99\": %.4f, \"max\": %.4f, \"mean\": %.4f, "
                   "\"samples\": %zu},\n",
                   pct(total.lat_us, 50), pct(total.lat_us, 99), lat_max, mean_ms, total.lat_us.size());
      std::fprintf(f, "  \"transaction_latency_ms\": {\"p50\": %.4f, \"p99\": %.4f},\n",
                   pct(total.txn_lat_us, 50), pct(total.txn_lat_us, 99));
      std::fprintf(f, "  \"client_cpu_seconds\": {\"user\": %.4f, \"system\": %.4f}\n", cpu_user, cpu_sys);
      std::fprintf(f, "}\n");
      std::fclose(f);
    }
  }

  if (sh.connects_ok.load() == 0) {
    std::fprintf(stderr, "smtp_load: no connection to %s could be established\n", o.target_text.c_str());
    return 3;
  }
  return 0;
}
