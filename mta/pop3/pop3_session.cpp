#include "mta/pop3/pop3_session.h"

#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mta/clock.h"
#include "mta/io/connection.h"
#include "mta/io/stoppable_session.h"
#include "mta/log.h"
#include "mta/pop3/maildrop.h"
#include "mta/pop3/pop3_command.h"
#include "mta/server_context.h"
#include "mta/smtp/sasl.h"
#include "mta/text.h"
#include "mta/worker.h"

namespace tern::pop3 {

namespace {

// RFC 2449 §4: a command line is at most 255 octets with its CRLF.
constexpr size_t kMaxLine = 255;
// A SASL response line (RFC 5034 §4 sets no limit; a PLAIN message of three
// 255-octet fields is about 1 KiB in base64).
constexpr size_t kMaxSaslLine = 2048;
// Unknown commands, bad syntax, commands in the wrong state, long lines:
// a client that keeps making them is not a POP3 client.
constexpr unsigned kMaxErrors = 20;

constexpr std::string_view kCleartextRefused = "[AUTH] Cleartext login not allowed, use STLS";

std::string num(uint64_t n) {
  return std::to_string(n);
}

// One counted session for a mailbox (MailboxLocks), released at scope end.
class MailboxLock {
 public:
  MailboxLock() = default;
  ~MailboxLock() { release(); }
  MailboxLock(const MailboxLock&) = delete;
  MailboxLock& operator=(const MailboxLock&) = delete;

  void hold(MailboxLocks* locks, std::string user) {
    release();
    locks_ = locks;
    user_ = std::move(user);
  }
  void release() {
    if (locks_) locks_->unlock(user_);
    locks_ = nullptr;
  }

 private:
  MailboxLocks* locks_ = nullptr;
  std::string user_;
};

class Session final : public io::StoppableSession {
 public:
  Session(Worker& worker, io::UniqueFd fd, bool implicit_tls)
      : worker_(worker),
        settings_(worker.settings()),
        conn_(worker.loop(), std::move(fd)),
        implicit_tls_(implicit_tls),
        client_ip_(io::peer_ip(conn_.fd())) {
    worker_.attach(this);
  }
  ~Session() { worker_.detach(this); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  io::Task<void> run();
  // Shutdown: a session waiting for a command answers -ERR [SYS/TEMP] and
  // closes now; one in a command finishes it first. Nothing is deleted
  // without QUIT, so ending in TRANSACTION state loses nothing.
  void request_stop() override {
    stop_requested_ = true;
    if (idle_) conn_.shutdown_read();
  }

 private:
  enum class Next { go_on, close };
  enum class State { authorization, transaction };

  io::Task<Next> dispatch(const Command& cmd);
  Next user(const Command& cmd);
  io::Task<Next> pass(const Command& cmd, bool after_user);
  io::Task<Next> auth(const Command& cmd);
  io::Task<Next> stls();
  io::Task<Next> login(std::string user, std::string password, std::string_view mechanism);
  io::Task<Next> retrieve(size_t n, std::optional<size_t> top_lines);
  io::Task<Next> update();
  Next list(const Command& cmd);
  Next uidl(const Command& cmd);
  Next dele(const Command& cmd);
  // TOP's message and line count; false: replied -ERR.
  bool top_arguments(const Command& cmd, size_t* n, std::optional<size_t>* lines);
  void capa();

  // The message number in `arg` when it names a message not deleted; else
  // replies -ERR and returns nullopt.
  std::optional<size_t> message(const std::string& arg);

  void ok(std::string_view text) {
    conn_.write(text.empty() ? std::string("+OK\r\n") : concat({"+OK ", text, "\r\n"}));
  }
  void err(std::string_view text) { conn_.write(concat({"-ERR ", text, "\r\n"})); }
  // -ERR for a protocol error; at the error limit the session ends.
  Next protocol_error(std::string_view text);

  const Config::Pop3& config() const { return settings_->config.pop3; }
  int64_t timeout_ms() const {
    return state_ == State::authorization ? config().login_timeout_ms : config().timeout_ms;
  }
  bool cleartext_allowed() const { return conn_.tls() != nullptr || config().allow_plaintext; }
  std::string_view listener() const { return implicit_tls_ ? "pop3s" : "pop3"; }

  Worker& worker_;
  std::shared_ptr<const Settings> settings_;  // the snapshot at connect, for the whole session
  io::Connection conn_;
  bool implicit_tls_;
  std::string client_ip_;
  ConnectionLimiter::Slot slot_;
  State state_ = State::authorization;
  std::string pending_user_;  // after USER, for PASS
  std::string user_;          // after login
  unsigned failures_ = 0;
  unsigned errors_ = 0;
  MailboxLock lock_;
  std::optional<Maildrop> drop_;
  size_t retrieved_ = 0;
  size_t deleted_ = 0;
  bool quit_ = false;
  bool idle_ = false;  // waiting for a command
  bool stop_requested_ = false;
};

Session::Next Session::protocol_error(std::string_view text) {
  err(text);
  if (++errors_ < kMaxErrors) return Next::go_on;
  log::event("too_many_errors", {{"client", client_ip_}, {"listener", listener()}, {"errors", errors_}});
  return Next::close;
}

io::Task<void> Session::run() {
  auto& ctx = worker_.context();
  ConnectionLimiter::Refusal why = ConnectionLimiter::Refusal::none;
  slot_ = ctx.pop3_limiter.acquire(client_ip_, config().max_connections, config().max_connections_per_ip, &why);
  conn_.set_write_timeout(config().login_timeout_ms);
  const bool rate_ok = ctx.rate.allow(policy::RateKind::connection, client_ip_,
                                      settings_->config.restrictions.connections_per_minute, wall_clock_us() / 1000);
  if (slot_ && !rate_ok) {
    log::event("connection_rejected",
               {{"client", client_ip_}, {"listener", listener()}, {"reason", "connection rate"}});
    err("[SYS/TEMP] Too many connections from this address, try again later");
    co_await conn_.flush(config().login_timeout_ms);
    co_return;
  }
  if (!slot_) {
    log::event("connection_rejected",
               {{"client", client_ip_}, {"listener", listener()}, {"reason", "too many connections"}});
    err("[SYS/TEMP] too many connections");
    co_await conn_.flush(config().login_timeout_ms);
    co_return;
  }
  log::event("connect", {{"client", client_ip_}, {"listener", listener()}});
  if (ctx.auth_blocks.blocked(client_ip_, wall_clock_us())) {
    log::event("connection_rejected",
               {{"client", client_ip_}, {"listener", listener()}, {"reason", "too many failed logins"}});
    err("[SYS/TEMP] Too many failed logins from this address, try again later");
    co_await conn_.flush(config().login_timeout_ms);
    co_return;
  }
  if (implicit_tls_) {
    // RFC 8314: TLS from the first byte, before the greeting.
    auto tls = settings_->tls;
    if (!tls) {
      log::event("tls_failed", {{"client", client_ip_}, {"error", "no TLS certificate configured"}});
      log::event("disconnect", {{"client", client_ip_}, {"listener", listener()}});
      co_return;
    }
    const io::IoStatus st = co_await conn_.start_tls(tls, config().login_timeout_ms);
    if (st != io::IoStatus::ok) {
      log::event("tls_failed", {{"client", client_ip_},
                                {"error", conn_.tls() ? conn_.tls()->last_error() : std::string("handshake")}});
      log::event("disconnect", {{"client", client_ip_}, {"listener", listener()}});
      co_return;
    }
    log::event("tls", {{"client", client_ip_}, {"version", conn_.tls()->version()}, {"cipher", conn_.tls()->cipher()}});
  }
  ok("Tern POP3 server ready");

  if (worker_.stopping() || ctx.stopping.load()) stop_requested_ = true;  // accepted as the stop began
  std::string line;
  while (!quit_) {
    if (stop_requested_) {
      err("[SYS/TEMP] Server shutting down");
      break;
    }
    conn_.set_write_timeout(timeout_ms());
    idle_ = true;
    const io::IoStatus st = co_await conn_.read_line(&line, kMaxLine, timeout_ms());
    idle_ = false;
    if (st == io::IoStatus::eof && stop_requested_) {
      err("[SYS/TEMP] Server shutting down");
      break;
    }
    if (st == io::IoStatus::timeout) {
      // RFC 1939 §3: the autologout timer closes without a response (and
      // without entering UPDATE).
      log::event("timeout", {{"client", client_ip_},
                             {"stage", state_ == State::authorization ? "pop3_login" : "pop3_transaction"}});
      break;
    }
    if (st == io::IoStatus::eof || st == io::IoStatus::error) break;
    if (st == io::IoStatus::too_long) {
      if (protocol_error("line too long") == Next::close) break;
      continue;
    }
    const Command cmd = parse_command(line);
    const Next next = co_await dispatch(cmd);
    if (next == Next::close) break;
  }
  co_await conn_.flush(timeout_ms());
  log::event("disconnect", {{"client", client_ip_},
                            {"listener", listener()},
                            {"user", user_},
                            {"retrieved", retrieved_},
                            {"deleted", deleted_},
                            {"quit", quit_ ? "yes" : "no"}});
}

io::Task<Session::Next> Session::dispatch(const Command& cmd) {
  const bool after_user = !pending_user_.empty();
  if (cmd.verb != Verb::pass) pending_user_.clear();  // PASS must come right after USER
  if (cmd.verb == Verb::unknown) co_return protocol_error("Unknown command");
  if (!cmd.error.empty()) co_return protocol_error(cmd.error);
  const bool authorization = state_ == State::authorization;
  switch (cmd.verb) {
    case Verb::capa:
      capa();
      co_return Next::go_on;
    case Verb::quit:
      if (!authorization) co_return co_await update();
      ok("Tern POP3 server signing off");
      quit_ = true;
      co_return Next::close;
    case Verb::user:
    case Verb::pass:
    case Verb::auth:
    case Verb::stls:
      if (!authorization) co_return protocol_error("Already logged in");
      break;
    case Verb::unknown:
      co_return protocol_error("Unknown command");
    default:
      if (authorization) co_return protocol_error("Not logged in");
      break;
  }
  switch (cmd.verb) {
    case Verb::user:
      co_return user(cmd);
    case Verb::pass:
      co_return co_await pass(cmd, after_user);
    case Verb::auth:
      co_return co_await auth(cmd);
    case Verb::stls:
      co_return co_await stls();
    case Verb::stat:
      ok(concat({num(drop_->count()), " ", num(drop_->total_octets())}));
      co_return Next::go_on;
    case Verb::list:
      co_return list(cmd);
    case Verb::uidl:
      co_return uidl(cmd);
    case Verb::retr: {
      const std::optional<size_t> n = message(cmd.args[0]);
      if (!n) co_return Next::go_on;
      co_return co_await retrieve(*n, std::nullopt);
    }
    case Verb::top: {
      size_t n = 0;
      std::optional<size_t> lines;
      if (!top_arguments(cmd, &n, &lines)) co_return Next::go_on;
      co_return co_await retrieve(n, lines);
    }
    case Verb::dele:
      co_return dele(cmd);
    case Verb::rset:
      drop_->reset();
      ok(concat({"maildrop has ", num(drop_->count()), " messages (", num(drop_->total_octets()), " octets)"}));
      co_return Next::go_on;
    case Verb::noop:
      ok("");
      co_return Next::go_on;
    default:
      break;
  }
  co_return protocol_error("Unknown command");
}

void Session::capa() {
  std::string r = "+OK Capability list follows\r\n";
  r += "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
  if (cleartext_allowed()) r += "USER\r\nSASL PLAIN\r\n";
  if (settings_->tls && !conn_.tls() && state_ == State::authorization) r += "STLS\r\n";
  r += "IMPLEMENTATION Tern\r\n.\r\n";
  conn_.write(r);
}

// ---- AUTHORIZATION ----

Session::Next Session::user(const Command& cmd) {
  if (!cleartext_allowed()) {
    err(kCleartextRefused);
    return Next::go_on;
  }
  // Any name gets +OK: whether a user exists is not told (RFC 1939 §13).
  pending_user_ = cmd.args[0];
  ok("");
  return Next::go_on;
}

io::Task<Session::Next> Session::pass(const Command& cmd, bool after_user) {
  if (!cleartext_allowed()) {
    err(kCleartextRefused);
    co_return Next::go_on;
  }
  if (!after_user) co_return protocol_error("Send USER first");
  std::string name = std::move(pending_user_);
  pending_user_.clear();
  co_return co_await login(std::move(name), cmd.args[0], "USER");
}

io::Task<Session::Next> Session::auth(const Command& cmd) {
  if (cmd.args.empty()) {
    // The mechanism list (RFC 1734 style, as clients probe it).
    conn_.write(cleartext_allowed() ? "+OK\r\nPLAIN\r\n.\r\n" : "+OK\r\n.\r\n");
    co_return Next::go_on;
  }
  if (!ascii_iequals(cmd.args[0], "PLAIN")) {
    err("Unsupported authentication mechanism");
    co_return Next::go_on;
  }
  if (!cleartext_allowed()) {
    err(kCleartextRefused);
    co_return Next::go_on;
  }
  std::string response;
  if (cmd.args.size() == 2) {
    // RFC 5034 §4: "=" is an empty initial response.
    response = cmd.args[1] == "=" ? std::string() : cmd.args[1];
  } else {
    conn_.write("+ \r\n");
    const io::IoStatus st = co_await conn_.read_line(&response, kMaxSaslLine, timeout_ms());
    if (st == io::IoStatus::too_long) co_return protocol_error("[AUTH] Authentication response too long");
    if (st == io::IoStatus::timeout) log::event("timeout", {{"client", client_ip_}, {"stage", "pop3_auth"}});
    if (st != io::IoStatus::ok) co_return Next::close;
  }
  if (response == "*") {
    err("Authentication cancelled");
    co_return Next::go_on;
  }
  const std::optional<std::string> decoded = smtp::base64_decode(response);
  std::optional<smtp::SaslPlain> plain;
  if (decoded) plain = smtp::parse_sasl_plain(*decoded);
  if (!plain) co_return protocol_error("Malformed authentication response");
  std::string password = std::move(plain->password);
  // Tern does not act for others: an authorization identity must be the user's own.
  if (!plain->authzid.empty() && plain->authzid != plain->authcid) password.clear();
  co_return co_await login(std::move(plain->authcid), std::move(password), "PLAIN");
}

io::Task<Session::Next> Session::stls() {
  if (conn_.tls()) co_return protocol_error("TLS already active");
  auto tls = settings_->tls;
  if (!tls) co_return protocol_error("STLS not available");
  ok("Begin TLS negotiation");
  const io::IoStatus flushed = co_await conn_.flush(timeout_ms());
  if (flushed != io::IoStatus::ok) co_return Next::close;
  // Commands pipelined after STLS came in clear text: never run them inside
  // the TLS session (RFC 2595 §4, the CVE-2011-0411 class).
  conn_.discard_input();
  const io::IoStatus st = co_await conn_.start_tls(tls, timeout_ms());
  if (st != io::IoStatus::ok) {
    log::event("tls_failed",
               {{"client", client_ip_}, {"error", conn_.tls() ? conn_.tls()->last_error() : std::string("handshake")}});
    co_return Next::close;
  }
  log::event("tls", {{"client", client_ip_}, {"version", conn_.tls()->version()}, {"cipher", conn_.tls()->cipher()}});
  pending_user_.clear();
  co_return Next::go_on;
}

io::Task<Session::Next> Session::login(std::string user, std::string password, std::string_view mechanism) {
  auto& ctx = worker_.context();
  io::OffloadThread* offload = ctx.auth_offload;
  if (!offload || !ctx.mail_offload) {
    // Hashing and file I/O must not run on the loop.
    log::event("pop3_unavailable", {{"client", client_ip_}, {"reason", "no offload thread"}});
    err("[SYS/TEMP] Login unavailable, try again later");
    co_return Next::go_on;
  }
  // No anonymous logins: an empty name or password never verifies.
  bool verified = false;
  auto users = settings_->users;
  // Past auth.user_failures_per_minute failures of this user (from any
  // address), every login of that user fails, right password or not.
  const std::string user_key = concat({"user:", user});
  const bool user_locked = ctx.rate.recent(policy::RateKind::login_failure, user_key, wall_clock_us() / 1000) >=
                           settings_->config.auth.user_failures_per_minute;
  if (users && !user.empty() && !password.empty() && !user_locked) {
    // crypt(3) is slow by design: off the loop thread. An unknown user
    // costs a hash too (UserDirectory::verify), so timing tells nothing.
    auto check = offload->call(worker_.loop(), [users, user, password] { return users->verify(user, password); });
    verified = co_await check;
  }
  if (!verified) {
    ++failures_;
    ctx.rate.allow(policy::RateKind::login_failure, user_key, std::numeric_limits<unsigned>::max(), wall_clock_us() / 1000);
    log::event("pop3_login_failed", {{"client", client_ip_},
                                     {"user", user},
                                     {"mechanism", mechanism},
                                     {"failures", failures_},
                                     {"user_locked", user_locked ? "yes" : "no"}});
    if (config().failure_delay_ms > 0) co_await worker_.loop().sleep(config().failure_delay_ms);
    err("[AUTH] Invalid login");
    if (failures_ < config().max_failures) co_return Next::go_on;
    // As for SMTP AUTH: the address is refused for a while on every listener.
    ctx.auth_blocks.block(client_ip_, wall_clock_us() + settings_->config.auth.failure_block_time_ms * 1000);
    log::event("connection_rejected",
               {{"client", client_ip_}, {"listener", listener()}, {"reason", "too many failed logins"}});
    co_return Next::close;
  }

  // RFC 1939 §8 / RFC 2449 [IN-USE]: one session per maildrop (as configured).
  if (!ctx.mailbox_locks.try_lock(user, config().max_sessions_per_user)) {
    log::event("pop3_login_refused", {{"client", client_ip_}, {"user", user}, {"reason", "mailbox in use"}});
    err("[IN-USE] mailbox in use");
    co_return Next::go_on;
  }
  lock_.hold(&ctx.mailbox_locks, user);

  const std::string root = settings_->config.local.maildir_root;
  auto opening = ctx.mail_offload->call(worker_.loop(), [root, user] { return Maildrop::open(root, user); });
  Result<Maildrop> opened = co_await opening;
  if (!opened) {
    log::event("maildrop_error", {{"client", client_ip_}, {"user", user}, {"error", opened.error()}});
    lock_.release();
    err("[SYS/TEMP] Unable to open the maildrop, try again later");
    co_return Next::go_on;
  }
  drop_.emplace(std::move(opened.value()));

  // POP-before-SMTP: this client may relay for a while. A synced RocksDB
  // write: off the loop, and done before +OK so that the client can relay
  // as soon as it has seen it.
  if (policy::PopWindow* window = ctx.pop_window) {
    const int64_t now = wall_clock_us();
    const int64_t until = now + static_cast<int64_t>(settings_->config.relay.pop_window_minutes) * 60'000'000;
    const std::string ip = client_ip_;
    auto adding =
        ctx.mail_offload->call(worker_.loop(), [window, ip, until, now] { return window->add(ip, until, now); });
    Status added = co_await adding;
    if (!added) log::event("pop_window_error", {{"client", client_ip_}, {"error", added.error()}});
  }

  state_ = State::transaction;
  user_ = user;
  log::event("pop3_login", {{"client", client_ip_},
                            {"user", user},
                            {"mechanism", mechanism},
                            {"messages", drop_->count()},
                            {"octets", drop_->total_octets()},
                            {"tls", conn_.tls() ? "yes" : "no"}});
  ok(concat({"maildrop has ", num(drop_->count()), " messages (", num(drop_->total_octets()), " octets)"}));
  co_return Next::go_on;
}

// ---- TRANSACTION ----

std::optional<size_t> Session::message(const std::string& arg) {
  const std::optional<size_t> n = parse_message_number(arg, drop_->size());
  if (!n || !drop_->exists(*n)) {
    err("No such message");
    return std::nullopt;
  }
  return n;
}

Session::Next Session::list(const Command& cmd) {
  if (!cmd.args.empty()) {
    const std::optional<size_t> n = message(cmd.args[0]);
    if (n) ok(concat({num(*n), " ", num(*drop_->octets(*n))}));
    return Next::go_on;
  }
  std::string r = concat({"+OK ", num(drop_->count()), " messages (", num(drop_->total_octets()), " octets)\r\n"});
  for (size_t i = 1; i <= drop_->size(); ++i) {
    const std::optional<uint64_t> octets = drop_->octets(i);
    if (octets) r += concat({num(i), " ", num(*octets), "\r\n"});
  }
  r += ".\r\n";
  conn_.write(r);
  return Next::go_on;
}

Session::Next Session::uidl(const Command& cmd) {
  if (!cmd.args.empty()) {
    const std::optional<size_t> n = message(cmd.args[0]);
    if (n) ok(concat({num(*n), " ", *drop_->uid(*n)}));
    return Next::go_on;
  }
  std::string r = "+OK\r\n";
  for (size_t i = 1; i <= drop_->size(); ++i) {
    const std::optional<std::string> uid = drop_->uid(i);
    if (uid) r += concat({num(i), " ", *uid, "\r\n"});
  }
  r += ".\r\n";
  conn_.write(r);
  return Next::go_on;
}

Session::Next Session::dele(const Command& cmd) {
  const std::optional<size_t> n = message(cmd.args[0]);
  if (!n) return Next::go_on;
  drop_->mark_deleted(*n);
  ok(concat({"message ", num(*n), " deleted"}));
  return Next::go_on;
}

bool Session::top_arguments(const Command& cmd, size_t* n, std::optional<size_t>* lines) {
  const std::optional<size_t> number = message(cmd.args[0]);
  if (!number) return false;
  const std::optional<size_t> count = parse_line_count(cmd.args[1]);
  if (!count) {
    err("Invalid number of lines");
    return false;
  }
  *n = *number;
  *lines = *count;
  return true;
}

io::Task<Session::Next> Session::retrieve(size_t n, std::optional<size_t> top_lines) {
  const uint64_t octets = *drop_->octets(n);
  Maildrop* drop = &*drop_;
  // The session is suspended meanwhile: nothing else touches the maildrop.
  auto reading = worker_.context().mail_offload->call(worker_.loop(),
                                                      [drop, n, top_lines] { return drop->retrieve(n, top_lines); });
  Result<std::string> content = co_await reading;
  if (!content) {
    log::event("maildrop_error", {{"client", client_ip_}, {"user", user_}, {"message", n}, {"error", content.error()}});
    err("[SYS/TEMP] Unable to read the message");
    co_return Next::go_on;
  }
  if (top_lines) {
    conn_.write("+OK\r\n");
  } else {
    conn_.write(concat({"+OK ", num(octets), " octets\r\n"}));
    ++retrieved_;
  }
  conn_.write(content.value());
  content.value().clear();
  content.value().shrink_to_fit();
  // Sent now, so pipelined RETRs never pile messages up in memory.
  const io::IoStatus st = co_await conn_.flush(timeout_ms());
  if (st != io::IoStatus::ok) co_return Next::close;
  co_return Next::go_on;
}

// QUIT in TRANSACTION: the UPDATE state (RFC 1939 §6).
io::Task<Session::Next> Session::update() {
  quit_ = true;
  if (drop_->deleted_count() == 0) {
    ok("Tern POP3 server signing off (0 messages deleted)");
    co_return Next::close;
  }
  Maildrop* drop = &*drop_;
  auto committing = worker_.context().mail_offload->call(worker_.loop(), [drop] { return drop->commit(); });
  Result<size_t> removed = co_await committing;
  if (!removed) {
    log::event("maildrop_error", {{"client", client_ip_}, {"user", user_}, {"error", removed.error()}});
    err("[SYS/TEMP] Some deleted messages not removed");
    co_return Next::close;
  }
  deleted_ = removed.value();
  ok(concat({"Tern POP3 server signing off (", num(deleted_), " messages deleted)"}));
  co_return Next::close;
}

}  // namespace

io::Task<void> run_pop3_session(Worker& worker, io::UniqueFd fd, bool implicit_tls) {
  Session session(worker, std::move(fd), implicit_tls);
  co_await session.run();
}

}  // namespace tern::pop3
