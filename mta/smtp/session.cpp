#include "mta/smtp/session.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "mta/clock.h"
#include "mta/text.h"
#include "mta/log.h"
#include "mta/smtp/domain_syntax.h"
#include "mta/smtp/received.h"
#include "mta/smtp/sasl.h"
#include "mta/spool_await.h"
#include "mta/worker.h"
#include "queue/queue_id.h"

namespace tern::smtp {

namespace {

// Bodies go to the spool in chunks of this size, so a 50 MB message never
// sits whole in memory (see docs/ARCHITECTURE.md, "Large messages").
constexpr size_t kChunkSize = 256 * 1024;

std::string_view verb_name(Verb v) {
  switch (v) {
    case Verb::ehlo: return "EHLO";
    case Verb::helo: return "HELO";
    case Verb::mail: return "MAIL";
    case Verb::rcpt: return "RCPT";
    case Verb::data: return "DATA";
    case Verb::bdat: return "BDAT";
    case Verb::rset: return "RSET";
    case Verb::noop: return "NOOP";
    case Verb::quit: return "QUIT";
    case Verb::help: return "HELP";
    case Verb::vrfy: return "VRFY";
    case Verb::expn: return "EXPN";
    case Verb::starttls: return "STARTTLS";
    case Verb::auth: return "AUTH";
    case Verb::etrn: return "ETRN";
    case Verb::saml: return "SAML";
    case Verb::send: return "SEND";
    case Verb::soml: return "SOML";
    case Verb::turn: return "TURN";
    case Verb::unknown: break;
  }
  return "unknown";
}

}  // namespace

io::Task<void> run_session(Worker& worker, io::UniqueFd fd, ListenerKind listener) {
  Session session(worker, std::move(fd), listener);
  co_await session.run();
}

Session::Session(Worker& worker, io::UniqueFd fd, ListenerKind listener)
    : worker_(worker), settings_(worker.settings()), conn_(worker.loop(), std::move(fd)), listener_(listener) {
  client_ip_ = io::peer_ip(conn_.fd());
  worker_.attach(this);
}

Session::~Session() { worker_.detach(this); }

const Config::Smtp& Session::limits() const { return settings_->config.smtp; }

void Session::request_stop() {
  stop_requested_ = true;
  if (idle_) conn_.shutdown_read();
}

void Session::reply(int code, std::string_view enhanced, std::string_view text) {
  std::string line = std::to_string(code);
  line += ' ';
  if (!enhanced.empty()) {
    line += enhanced;
    line += ' ';
  }
  line += text;
  line += "\r\n";
  conn_.write(line);
}

bool Session::count_error() { return ++errors_ >= limits().max_errors; }

Session::Next Session::fail(int code, std::string_view enhanced, std::string_view text) {
  reply(code, enhanced, text);
  if (!count_error()) return Next::go_on;
  reply(421, "4.7.0", "Too many errors, closing connection");
  log::event("too_many_errors", {{"client", client_ip_}, {"errors", errors_}});
  return Next::close;
}

void Session::reset_transaction() {
  has_mail_ = false;
  mail_ = MailArgument{};
  recipients_.clear();
  queue_id_.clear();
  reader_.reset();
  chunks_written_ = 0;
  pending_chunk_.clear();
  bdat_active_ = false;
  bdat_failure_.reset();
  store_failure_.reset();
}

io::Task<void> Session::run() {
  // limits() is looked up afresh each time: settings_ changes on reload.
  ConnectionLimiter::Refusal why;
  slot_ = worker_.context().limiter.acquire(client_ip_, limits().max_connections, limits().max_connections_per_ip,
                                            &why);
  if (!slot_) {
    const char* reason = why == ConnectionLimiter::Refusal::total ? "too many connections"
                                                                  : "too many connections from this address";
    log::event("connection_rejected", {{"client", client_ip_}, {"reason", reason}});
    reply(421, "4.7.0", std::string(settings_->hostname) + " " + reason + ", try again later");
    co_await conn_.flush(limits().write_timeout_ms);
    co_return;
  }
  log::event("connect", {{"client", client_ip_}, {"listener", listener_kind_name(listener_)}});
  const bool admitted = co_await admit();
  if (!admitted) {
    co_await conn_.flush(limits().write_timeout_ms);
    log::event("disconnect", {{"client", client_ip_}, {"errors", errors_}});
    co_return;
  }
  // The daemon sets ctx.stopping before it logs "stopping" and before its
  // workers close their listeners: a connection accepted in between gets 421.
  if (worker_.stopping() || worker_.context().stopping.load()) stop_requested_ = true;
  reply(220, "", settings_->hostname + " ESMTP Tern");

  std::string line;
  while (!quit_) {
    if (stop_requested_ && !has_mail_) {
      reply(421, "4.3.2", "Service shutting down, closing connection");
      break;
    }
    idle_ = !has_mail_;
    conn_.set_write_timeout(limits().write_timeout_ms);
    auto st = co_await conn_.read_line(&line, limits().max_command_line, limits().command_timeout_ms);
    idle_ = false;
    if (st == io::IoStatus::eof && stop_requested_) {
      reply(421, "4.3.2", "Service shutting down, closing connection");
      break;
    }
    if (st == io::IoStatus::timeout) {
      reply(421, "4.4.2", settings_->hostname + " Timeout waiting for a command, closing connection");
      log::event("timeout", {{"client", client_ip_}, {"stage", "command"}});
      break;
    }
    if (st == io::IoStatus::eof || st == io::IoStatus::error) break;
    if (st == io::IoStatus::too_long) {
      if (fail(500, "5.5.2", "Line too long") == Next::close) break;
      continue;
    }
    Command cmd = parse_command(line);
    if (co_await dispatch(cmd) == Next::close) break;
  }
  co_await conn_.flush(limits().write_timeout_ms);
  if (has_mail_ && chunks_written_ > 0) co_await discard_content();
  log::event("disconnect", {{"client", client_ip_}, {"errors", errors_}});
}

io::Task<Session::Next> Session::dispatch(const Command& cmd) {
  switch (cmd.verb) {
    case Verb::ehlo:
    case Verb::helo:
      co_return ehlo(cmd, cmd.verb == Verb::ehlo);
    case Verb::mail:
      co_return mail(cmd);
    case Verb::rcpt:
      co_return rcpt(cmd);
    case Verb::data:
      co_return co_await data(cmd);
    case Verb::bdat:
      co_return co_await bdat(cmd);
    case Verb::starttls:
      co_return co_await starttls(cmd);
    case Verb::etrn:
      co_return co_await etrn(cmd);
    case Verb::auth:
      co_return co_await auth(cmd);
    case Verb::rset:
      if (!cmd.argument.empty()) co_return fail(501, "5.5.4", "Syntax: RSET");
      reset_transaction();
      reply(250, "2.0.0", "Ok");
      co_return Next::go_on;
    case Verb::noop:
      reply(250, "2.0.0", "Ok");
      co_return Next::go_on;
    case Verb::quit:
      reply(221, "2.0.0", settings_->hostname + " closing connection");
      quit_ = true;
      co_return Next::close;
    case Verb::help:
      reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS");
      co_return Next::go_on;
    case Verb::vrfy:
      if (cmd.argument.empty()) co_return fail(501, "5.5.4", "Syntax: VRFY address");
      // RFC 5321 §3.5.3: 252 when we will not say whether a user exists.
      reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
      co_return Next::go_on;
    case Verb::expn:
    case Verb::saml:
    case Verb::send:
    case Verb::soml:
    case Verb::turn:
      co_return fail(502, "5.5.1", std::string(verb_name(cmd.verb)) + " command not implemented");
    case Verb::unknown:
      break;
  }
  co_return fail(500, "5.5.2", "Command unrecognized");
}

Session::Next Session::ehlo(const Command& cmd, bool extended) {
  auto parsed = parse_helo_argument(cmd.argument);
  if (auto* err = std::get_if<Reply>(&parsed)) return fail(err->code, err->enhanced, err->text);
  reset_transaction();
  helo_ = std::string(std::get<std::string_view>(parsed));
  esmtp_ = extended;
  settings_ = worker_.settings();  // a new greeting picks up reloaded settings
  const auto& hostname = settings_->hostname;
  if (!extended) {
    reply(250, "", hostname);
    return Next::go_on;
  }
  std::string r = "250-" + hostname + "\r\n";
  r += "250-PIPELINING\r\n";
  r += "250-SIZE " + std::to_string(limits().max_message_size) + "\r\n";
  r += "250-8BITMIME\r\n";
  r += "250-ENHANCEDSTATUSCODES\r\n";
  r += "250-SMTPUTF8\r\n";
  r += "250-DSN\r\n";
  if (!settings_->config.routing.etrn_domains.empty()) r += "250-ETRN\r\n";
  if (auth_offered()) r += "250-AUTH PLAIN LOGIN\r\n";
  if (settings_->tls && !conn_.tls()) r += "250-STARTTLS\r\n";
  r += "250 CHUNKING\r\n";
  conn_.write(r);
  return Next::go_on;
}

Session::Next Session::mail(const Command& cmd) {
  if (helo_.empty()) return fail(503, "5.5.1", "Send HELO/EHLO first");
  if (has_mail_) return fail(503, "5.5.1", "Nested MAIL command");
  if (stop_requested_) return fail(421, "4.3.2", "Service shutting down");
  const bool auth_required = listener_ != ListenerKind::mta || settings_->config.auth.require == "all";
  if (auth_required && auth_user_.empty()) return fail(530, "5.7.0", "Authentication required");
  if (!restricted_.empty() && auth_user_.empty() && !in_pop_window()) {
    log::event("connection_rejected", {{"client", client_ip_}, {"reason", restricted_}, {"stage", "mail"}});
    return fail(554, "5.7.1", restricted_);
  }
  auto& ctx = worker_.context();
  if (!ctx.rate.allow(policy::RateKind::message, client_ip_, settings_->config.restrictions.messages_per_minute,
                      wall_clock_us() / 1000)) {
    log::event("rate_limited", {{"client", client_ip_}, {"kind", "messages"}});
    return fail(451, "4.7.0", "Too many messages from this address, slow down");
  }
  if (worker_.context().storage.low()) {
    log::event("rejected", {{"client", client_ip_}, {"code", 452}, {"reason", "insufficient storage"}});
    return fail(452, "4.3.1", "Insufficient system storage, try again later");
  }
  auto parsed = parse_mail_argument(cmd.argument);
  if (auto* err = std::get_if<Reply>(&parsed)) return fail(err->code, err->enhanced, err->text);
  auto& m = std::get<MailArgument>(parsed);
  bool has_params = m.has_size || !m.body.empty() || m.smtputf8 || !m.ret.empty() || !m.envid.empty();
  if (has_params && !esmtp_) return fail(555, "5.5.4", "MAIL parameters need EHLO");
  if (m.has_size && m.size > limits().max_message_size)
    return fail(552, "5.3.4", "Message size exceeds fixed maximum message size");
  if (m.has_size && !worker_.context().storage.admits(m.size)) {  // RFC 1870 §6.1: temporarily no room for this one
    log::event("rejected", {{"client", client_ip_}, {"code", 452}, {"reason", "insufficient storage for SIZE"},
                            {"size", m.size}});
    return fail(452, "4.3.1", "Insufficient system storage for a message of this size, try again later");
  }
  // The old system's sender verification: an authenticated client sends as
  // its own addresses only.
  const auto& auth = settings_->config.auth;
  const bool check_sender =
      !auth_user_.empty() && settings_->users && !m.sender.null() &&
      (auth.sender_check == "all" ||
       (auth.sender_check == "unlisted" && std::find(auth.sender_check_exempt.begin(), auth.sender_check_exempt.end(),
                                                     auth_user_) == auth.sender_check_exempt.end()));
  if (check_sender && !settings_->users->owns(auth_user_, m.sender.str())) {
    log::event("sender_rejected", {{"client", client_ip_}, {"user", auth_user_}, {"from", m.sender.str()}});
    return fail(553, "5.7.1", concat({"<", m.sender.str(), ">: Sender address not owned by user ", auth_user_}));
  }
  settings_ = worker_.settings();  // each transaction uses the newest settings
  mail_ = std::move(m);
  has_mail_ = true;
  reply(250, "2.1.0", "Ok");
  return Next::go_on;
}

Session::Next Session::rcpt(const Command& cmd) {
  if (!has_mail_) return fail(503, "5.5.1", "Need MAIL before RCPT");
  if (bdat_active_) return fail(503, "5.5.1", "RCPT not allowed during BDAT");
  auto parsed = parse_rcpt_argument(cmd.argument, mail_.smtputf8);
  if (auto* err = std::get_if<Reply>(&parsed)) return fail(err->code, err->enhanced, err->text);
  auto& r = std::get<RcptArgument>(parsed);
  if ((r.notify != 0 || !r.orcpt.empty()) && !esmtp_) return fail(555, "5.5.4", "RCPT parameters need EHLO");
  if (recipients_.size() >= limits().max_recipients)
    return fail(452, "4.5.3", "Too many recipients");
  if (!worker_.context().rate.allow(policy::RateKind::recipient, client_ip_,
                                    settings_->config.restrictions.recipients_per_minute, wall_clock_us() / 1000)) {
    log::event("rate_limited", {{"client", client_ip_}, {"kind", "recipients"}});
    return fail(451, "4.7.0", "Too many recipients from this address, slow down");
  }
  const RelayPolicy::Verdict verdict = settings_->relay.decide(relay_client(), r.recipient);
  if (verdict.decision == RelayPolicy::Decision::denied) {
    log::event("relay_rejected", {{"client", client_ip_}, {"helo", helo_}, {"from", mail_.sender.str()},
                                  {"rcpt", r.recipient.str()},
                                  {"mode", relay_mode_name(settings_->relay.mode())},
                                  {"reason", verdict.reason}});
    std::string text = r.recipient.str();  // built in steps: g++ 12 -Wrestrict misfires on "<" + str
    text.insert(0, 1, '<');
    text += ">: Relay access denied";
    return fail(554, "5.7.1", text);
  }
  // Unknown local users are refused now, not accepted and bounced later.
  if (verdict.decision == RelayPolicy::Decision::local && settings_->check_local_recipients &&
      !r.recipient.domain.empty()) {
    const local::Resolution who = settings_->local_recipients->resolve(r.recipient.str());
    if (!who.known) {
      const bool loop = who.error == local::kAliasLoop;
      log::event("rcpt_rejected", {{"client", client_ip_}, {"rcpt", r.recipient.str()}, {"reason", who.error}});
      return fail(550, loop ? "5.4.6" : "5.1.1",
                  concat({"<", r.recipient.str(), ">: ",
                          loop ? "Alias expansion loop" : "Recipient address rejected: User unknown"}));
    }
  }
  queue::Recipient rec;
  rec.address = r.recipient.str();
  rec.notify = r.notify;
  rec.orcpt = std::move(r.orcpt);
  recipients_.push_back(std::move(rec));
  reply(250, "2.1.5", "Ok");
  return Next::go_on;
}

void Session::begin_content(DataReader::Mode mode) {
  const auto& lim = limits();
  ContentLimits cl;
  cl.max_size = lim.max_message_size;
  cl.max_line_length = lim.max_line_length;
  cl.max_received = lim.max_received_headers;
  cl.allow_bare_lf = lim.allow_bare_lf;
  reader_.emplace(mode, cl);
  queue_id_ = queue::new_queue_id();
  content_started_us_ = wall_clock_us();
  chunks_written_ = 0;
  stored_bytes_ = 0;
  TraceInfo t;
  t.helo = helo_;
  t.client_ip = client_ip_;
  t.hostname = settings_->hostname;
  std::string proto = protocol_name(esmtp_, conn_.tls() != nullptr, !auth_user_.empty(), mail_.smtputf8);
  t.protocol = proto;
  std::string tls_version, tls_cipher;
  if (conn_.tls()) {
    tls_version = conn_.tls()->version();
    tls_cipher = conn_.tls()->cipher();
  }
  t.tls_version = tls_version;
  t.tls_cipher = tls_cipher;
  t.queue_id = queue_id_;
  if (recipients_.size() == 1) t.for_recipient = recipients_.front().address;
  t.time_us = content_started_us_;
  pending_chunk_ = received_header(t);
}

Reply Session::storage_failure_reply() const {
  if (worker_.context().storage.low()) return Reply{452, "4.3.1", "Insufficient system storage, try again later"};
  return Reply{451, "4.3.0", "Local error in processing: queue write failed, try again later"};
}

io::Task<void> Session::spill_chunk_if_full() {
  if (reader_->pending_output() + pending_chunk_.size() < kChunkSize || reader_->verdict()) co_return;
  if (pending_chunk_.empty()) {
    pending_chunk_ = reader_->take_output();
  } else {
    pending_chunk_ += reader_->take_output();
  }
  if (store_failure_) {  // the rest of a refused message is read, not stored
    pending_chunk_.clear();
    co_return;
  }
  auto& spool = worker_.context().spool;
  std::string id = queue_id_;
  uint32_t index = chunks_written_;
  std::string chunk = std::move(pending_chunk_);
  pending_chunk_.clear();
  stored_bytes_ += chunk.size();
  Status st = co_await SpoolAwait{worker_.loop(), [&](queue::Spool::Done done) {
                                    spool.append_chunk(id, index, std::move(chunk), std::move(done));
                                  }};
  ++chunks_written_;  // even a failed write may have left a chunk: discard covers it
  if (!st.ok()) {
    log::event("chunk_write_failed",
               {{"qid", queue_id_}, {"client", client_ip_}, {"chunk", index}, {"error", st.error()}});
    store_failure_ = storage_failure_reply();
  }
}

io::Task<void> Session::discard_content() {
  if (chunks_written_ > 0) {
    auto& spool = worker_.context().spool;
    std::string id = queue_id_;
    uint32_t n = chunks_written_;
    co_await SpoolAwait{worker_.loop(),
                        [&](queue::Spool::Done done) { spool.discard(id, n, std::move(done)); }};
  }
  chunks_written_ = 0;
}

io::Task<void> Session::finish_content() {
  if (auto refusal = reader_->verdict()) {
    log::event("rejected", {{"qid", queue_id_}, {"client", client_ip_}, {"code", refusal->code},
                            {"reason", refusal->text}});
    co_await discard_content();
    reset_transaction();
    if (fail(refusal->code, refusal->enhanced, refusal->text) == Next::close) quit_ = true;
    co_return;
  }
  if (store_failure_) {  // not the client's error: not counted as one
    Reply refused = *store_failure_;
    log::event("rejected", {{"qid", queue_id_}, {"client", client_ip_}, {"code", refused.code},
                            {"reason", refused.text}});
    co_await discard_content();
    reset_transaction();
    reply(refused);
    co_return;
  }
  queue::Envelope env;
  env.id = queue_id_;
  env.sender = mail_.sender.str();
  env.size_param = mail_.size;
  env.body_type = mail_.body;
  env.smtputf8 = mail_.smtputf8;
  env.ret = mail_.ret;
  env.envid = mail_.envid;
  env.recipients = recipients_;
  env.arrival_us = content_started_us_;
  env.client_ip = client_ip_;
  env.client_helo = helo_;
  env.protocol = protocol_name(esmtp_, conn_.tls() != nullptr, !auth_user_.empty(), mail_.smtputf8);
  env.message_id = reader_->message_id();
  if (pending_chunk_.empty()) {
    pending_chunk_ = reader_->take_output();
  } else {
    pending_chunk_ += reader_->take_output();
  }
  env.body_size = stored_bytes_ + pending_chunk_.size();
  env.body_chunks = chunks_written_ + 1;
  env.queue = queue::QueueName::incoming;
  env.next_attempt_us = content_started_us_;
  auto& spool = worker_.context().spool;
  std::string last = std::move(pending_chunk_);
  pending_chunk_.clear();
  // What the log line needs, kept before the envelope goes to the spool.
  const std::string logged_sender = "<" + env.sender + ">";
  const size_t logged_recipients = env.recipients.size();
  const std::string logged_protocol = env.protocol;
  const std::string logged_message_id = env.message_id;
  Status st = co_await SpoolAwait{worker_.loop(), [&](queue::Spool::Done done) {
                                    spool.commit(std::move(env), std::move(last), std::move(done));
                                  }};
  if (!st.ok()) {
    log::event("queue_error", {{"qid", queue_id_}, {"client", client_ip_}, {"error", st.error()}});
    co_await discard_content();
    reply(storage_failure_reply());
    reset_transaction();
    co_return;
  }
  log::event("received", {{"qid", queue_id_}, {"client", client_ip_}, {"helo", helo_},
                          {"from", logged_sender}, {"nrcpt", logged_recipients},
                          {"size", reader_->size()}, {"proto", logged_protocol},
                          {"message_id", logged_message_id}});
  if (worker_.context().queued) worker_.context().queued();
  reply(250, "2.0.0", "Ok: queued as " + queue_id_);
  chunks_written_ = 0;  // committed: nothing to discard any more
  reset_transaction();
}

// RFC 1985: a client that holds mail for a domain asks for it now. Allowed
// for the domains in routing.etrn_domains; "@domain" includes subdomains;
// named queues ("#queue") are not supported.
io::Task<Session::Next> Session::etrn(const Command& cmd) {
  if (has_mail_) co_return fail(503, "5.5.1", "ETRN not allowed during a mail transaction");
  std::string_view node = cmd.argument;
  if (node.empty()) co_return fail(501, "5.5.4", "Syntax: ETRN domain");
  const std::string shown(node);
  if (node.front() == '#') co_return fail(458, "4.3.0", "Unable to queue messages for node " + shown);
  const bool subdomains = node.front() == '@';
  if (subdomains) node.remove_prefix(1);
  if (!detail::valid_domain(node, false)) co_return fail(501, "5.5.4", "Syntax: ETRN domain");
  const std::string domain = ascii_lower(node);
  const auto& allowed = settings_->config.routing.etrn_domains;
  if (std::find(allowed.begin(), allowed.end(), domain) == allowed.end()) {
    log::event("etrn_refused", {{"client", client_ip_}, {"node", shown}});
    co_return fail(459, "4.7.1", "Node " + shown + " not allowed: ETRN is not enabled for it");
  }
  auto& flush = worker_.context().flush;
  if (!flush) co_return fail(458, "4.3.0", "Unable to queue messages for node " + shown);
  const std::string target = (subdomains ? "@" : "") + domain;
  const size_t n = co_await io::CallbackAwait<size_t>{
      worker_.loop(), [&](io::CallbackAwait<size_t>::Done done) { flush(target, std::move(done)); }};
  log::event("etrn", {{"client", client_ip_}, {"node", shown}, {"messages", n}});
  if (n == 0) {
    reply(251, "2.0.0", "OK, no messages waiting for node " + shown);
  } else {
    reply(253, "2.0.0", "OK, " + std::to_string(n) + " pending messages for node " + shown + " started");
  }
  co_return Next::go_on;
}

io::Task<io::IoStatus> Session::fill_flushing(int64_t timeout_ms) {
  if (conn_.has_output()) {
    if (auto st = co_await conn_.flush(limits().write_timeout_ms); st != io::IoStatus::ok) co_return st;
  }
  co_return co_await conn_.fill(timeout_ms);
}

io::Task<Session::Next> Session::data(const Command& cmd) {
  if (!cmd.argument.empty()) co_return fail(501, "5.5.4", "Syntax: DATA");
  if (!has_mail_) co_return fail(503, "5.5.1", "Need MAIL command");
  if (bdat_active_) co_return fail(503, "5.5.1", "DATA not allowed after BDAT");
  if (recipients_.empty()) co_return fail(554, "5.5.1", "No valid recipients");
  reply(354, "", "End data with <CR><LF>.<CR><LF>");
  if (co_await conn_.flush(limits().write_timeout_ms) != io::IoStatus::ok) co_return Next::close;
  begin_content(DataReader::Mode::data);
  for (;;) {
    auto in = conn_.buffered();
    if (!in.empty()) conn_.consume(reader_->feed(in));
    if (reader_->done()) break;
    co_await spill_chunk_if_full();
    auto st = co_await conn_.fill(limits().data_timeout_ms);
    if (st == io::IoStatus::ok) continue;
    if (st == io::IoStatus::timeout) {
      reply(421, "4.4.2", settings_->hostname + " Timeout during DATA, closing connection");
      log::event("timeout", {{"client", client_ip_}, {"stage", "data"}, {"qid", queue_id_}});
    }
    co_return Next::close;  // the transaction is abandoned; run() discards its chunks
  }
  co_await finish_content();
  co_return quit_ ? Next::close : Next::go_on;
}

io::Task<Session::Next> Session::bdat(const Command& cmd) {
  auto parsed = parse_bdat_argument(cmd.argument);
  if (auto* err = std::get_if<Reply>(&parsed)) {
    reply(*err);
    // The chunk's length is unknown, so its bytes cannot be told from
    // commands: the only safe course is to end the session.
    reply(421, "4.7.0", "Cannot continue after a malformed BDAT, closing connection");
    co_return Next::close;
  }
  auto arg = std::get<BdatArgument>(parsed);
  std::optional<Reply> refuse;
  if (!has_mail_) {
    refuse = Reply{503, "5.5.1", "Need MAIL command"};
  } else if (recipients_.empty()) {
    refuse = Reply{554, "5.5.1", "No valid recipients"};
  } else if (bdat_failure_) {
    refuse = bdat_failure_;
  }
  if (!refuse && !bdat_active_) {
    bdat_active_ = true;
    begin_content(DataReader::Mode::bdat);
  }
  // Consume exactly arg.size octets, feeding them to the reader unless refused.
  uint64_t remaining = arg.size;
  while (remaining > 0) {
    auto in = conn_.buffered();
    if (!in.empty()) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining, in.size()));
      if (!refuse) reader_->feed(in.substr(0, n));
      conn_.consume(n);
      remaining -= n;
      if (!refuse) co_await spill_chunk_if_full();
      continue;
    }
    auto st = co_await fill_flushing(limits().data_timeout_ms);
    if (st == io::IoStatus::ok) continue;
    if (st == io::IoStatus::timeout) {
      reply(421, "4.4.2", settings_->hostname + " Timeout during BDAT, closing connection");
      log::event("timeout", {{"client", client_ip_}, {"stage", "bdat"}, {"qid", queue_id_}});
    }
    co_return Next::close;
  }
  if (refuse) {
    if (bdat_failure_ && arg.last) reset_transaction();
    co_return fail(refuse->code, refuse->enhanced, refuse->text);
  }
  if (arg.last) {
    reader_->finish();
    co_await finish_content();
    co_return quit_ ? Next::close : Next::go_on;
  }
  if (auto failure = reader_->verdict()) {
    // Refuse now and for every further chunk of this message.
    co_await discard_content();
    bdat_failure_ = failure;
    co_return fail(failure->code, failure->enhanced, failure->text);
  }
  if (store_failure_) {  // the spool refused a chunk: so is every further one
    co_await discard_content();
    bdat_failure_ = store_failure_;
    reply(*store_failure_);
    co_return Next::go_on;
  }
  reply(250, "2.0.0", std::to_string(arg.size) + " octets received");
  co_return Next::go_on;
}

io::Task<Session::Next> Session::starttls(const Command& cmd) {
  if (!cmd.argument.empty()) co_return fail(501, "5.5.4", "Syntax: STARTTLS");
  if (conn_.tls()) co_return fail(503, "5.5.1", "TLS already active");
  auto ctx = settings_->tls;
  if (!ctx) co_return fail(502, "5.5.1", "STARTTLS not available");
  reply(220, "2.0.0", "Ready to start TLS");
  if (co_await conn_.flush(limits().write_timeout_ms) != io::IoStatus::ok) co_return Next::close;
  // Anything the client pipelined after STARTTLS arrived in clear text and
  // must not be executed inside the TLS session (CVE-2011-0411 class).
  conn_.discard_input();
  auto st = co_await conn_.start_tls(ctx, limits().command_timeout_ms);
  if (st != io::IoStatus::ok) {
    log::event("tls_failed", {{"client", client_ip_},
                              {"error", conn_.tls() ? conn_.tls()->last_error() : std::string("handshake")}});
    co_return Next::close;
  }
  log::event("tls", {{"client", client_ip_}, {"version", conn_.tls()->version()},
                     {"cipher", conn_.tls()->cipher()}});
  // RFC 3207 §4.2: forget everything learned before TLS.
  reset_transaction();
  helo_.clear();
  esmtp_ = false;
  auth_user_.clear();
  co_return Next::go_on;
}

// ---- access control ----

bool Session::in_pop_window() const {
  const auto* window = worker_.context().pop_window;
  return window && window->contains(client_ip_, wall_clock_us());
}

RelayClient Session::relay_client() const {
  // The window matters to the relay decision in mode pop_before_smtp only:
  // other modes do not pay for the lookup at every RCPT.
  const bool pop_mode = settings_->relay.mode() == RelayMode::pop_before_smtp;
  return RelayClient{client_ip_, !auth_user_.empty(), pop_mode && in_pop_window()};
}

bool Session::auth_offered() const {
  return settings_->users && (conn_.tls() || settings_->config.auth.allow_plaintext);
}

io::Task<bool> Session::admit() {
  auto& ctx = worker_.context();
  const auto& restrictions = settings_->config.restrictions;
  const int64_t now = wall_clock_us();
  if (ctx.auth_blocks.blocked(client_ip_, now)) {
    log::event("connection_rejected", {{"client", client_ip_}, {"reason", "too many failed logins"}});
    reply(421, "4.7.0", settings_->hostname + " Too many failed logins from this address, try again later");
    co_return false;
  }
  if (!ctx.rate.allow(policy::RateKind::connection, client_ip_, restrictions.connections_per_minute, now / 1000)) {
    log::event("connection_rejected", {{"client", client_ip_}, {"reason", "connection rate"}});
    reply(421, "4.7.0", settings_->hostname + " Too many connections from this address, try again later");
    co_return false;
  }
  if (listener_ == ListenerKind::mta) {
    std::string reason;
    for (const Network& net : settings_->deny) {
      if (net.contains(client_ip_)) {
        reason = "Access denied: your address is refused by this server";
        break;
      }
    }
    if (reason.empty() && !restrictions.dnsbl.empty()) {
      auto listed = worker_.dnsbl_reason(client_ip_);
      std::optional<std::string> hit = co_await listed;
      if (hit) reason = std::move(*hit);
    }
    if (!reason.empty()) {
      if (restrictions.override && in_pop_window()) {
        log::event("restriction_overridden", {{"client", client_ip_}, {"reason", reason}, {"by", "pop_window"}});
      } else if (restrictions.override) {
        restricted_ = reason;  // AUTH may still lift it; MAIL refuses otherwise
        log::event("restricted", {{"client", client_ip_}, {"reason", reason}});
      } else {
        log::event("connection_rejected", {{"client", client_ip_}, {"reason", reason}});
        reply(554, "5.7.1", reason);
        co_return false;
      }
    }
  }
  if (listener_ == ListenerKind::submissions) {
    // RFC 8314: TLS from the first byte.
    auto st = co_await conn_.start_tls(settings_->tls, limits().command_timeout_ms);
    if (st != io::IoStatus::ok) {
      log::event("tls_failed", {{"client", client_ip_},
                                {"error", conn_.tls() ? conn_.tls()->last_error() : std::string("handshake")}});
      co_return false;
    }
    log::event("tls", {{"client", client_ip_}, {"version", conn_.tls()->version()}, {"cipher", conn_.tls()->cipher()}});
  }
  co_return true;
}

io::Task<std::optional<std::string>> Session::sasl_response(std::optional<std::string> initial,
                                                            std::string_view challenge) {
  // RFC 4954 §4: "=" is an empty initial response.
  if (initial) co_return *initial == "=" ? std::string() : std::move(*initial);
  reply(334, "", challenge);
  // A response line may be up to 12288 octets.
  std::string line;
  auto st = co_await conn_.read_line(&line, 12'288, limits().command_timeout_ms);
  if (st == io::IoStatus::too_long) co_return std::string("\x01");  // never valid base64: refused as such
  if (st != io::IoStatus::ok) co_return std::nullopt;
  co_return line;
}

io::Task<Session::Next> Session::auth(const Command& cmd) {
  const auto& config = settings_->config.auth;
  if (!settings_->users) co_return fail(502, "5.5.1", "AUTH command not implemented");
  if (!esmtp_) co_return fail(503, "5.5.1", "Send EHLO first");
  if (!auth_user_.empty()) co_return fail(503, "5.5.1", "Already authenticated");
  if (has_mail_) co_return fail(503, "5.5.1", "AUTH not allowed during a mail transaction");
  if (!auth_offered()) co_return fail(538, "5.7.11", "Encryption required for requested authentication mechanism");
  const std::string_view arg = cmd.argument;
  const size_t space = arg.find(' ');
  const std::string mechanism = ascii_lower(arg.substr(0, space));
  std::optional<std::string> initial;
  if (space != std::string_view::npos) initial = std::string(arg.substr(space + 1));
  if (mechanism != "plain" && mechanism != "login") co_return fail(504, "5.5.4", "Unrecognized authentication type");

  std::string user, password;
  bool malformed = false;
  if (mechanism == "plain") {
    auto asked = sasl_response(std::move(initial), "");
    std::optional<std::string> response = co_await asked;
    if (!response) co_return Next::close;
    if (*response == "*") co_return fail(501, "5.0.0", "Authentication cancelled");
    auto decoded = base64_decode(*response);
    auto plain = decoded ? parse_sasl_plain(*decoded) : std::nullopt;
    if (!plain) {
      malformed = true;
    } else {
      // Tern does not act for others: an authorization identity must be the user's own.
      user = plain->authcid;
      password = plain->password;
      if (!plain->authzid.empty() && plain->authzid != plain->authcid) password.clear();
    }
  } else {
    auto asked_user = sasl_response(std::move(initial), "VXNlcm5hbWU6");  // "Username:"
    std::optional<std::string> user_line = co_await asked_user;
    if (!user_line) co_return Next::close;
    if (*user_line == "*") co_return fail(501, "5.0.0", "Authentication cancelled");
    auto asked_password = sasl_response(std::nullopt, "UGFzc3dvcmQ6");  // "Password:"
    std::optional<std::string> password_line = co_await asked_password;
    if (!password_line) co_return Next::close;
    if (*password_line == "*") co_return fail(501, "5.0.0", "Authentication cancelled");
    auto decoded_user = base64_decode(*user_line);
    auto decoded_password = base64_decode(*password_line);
    if (!decoded_user || !decoded_password) {
      malformed = true;
    } else {
      user = std::move(*decoded_user);
      password = std::move(*decoded_password);
    }
  }
  if (malformed) co_return fail(501, "5.5.2", "Cannot decode the authentication response");

  // crypt(3) is slow by design: off the loop thread.
  bool verified = false;
  // Guessing one user's password from many addresses: past the per-user
  // limit every login of that user fails, right password or not.
  auto& rate = worker_.context().rate;
  const std::string user_key = concat({"user:", user});
  const bool user_locked =
      rate.recent(policy::RateKind::login_failure, user_key, wall_clock_us() / 1000) >= config.user_failures_per_minute;
  if (!password.empty() && !user_locked) {
    auto users = settings_->users;
    auto check = worker_.context().auth_offload->call(
        worker_.loop(), [users, user, password] { return users->verify(user, password); });
    verified = co_await check;
  }
  if (verified) {
    auth_user_ = user;  // lifts restricted_ at MAIL for as long as the login holds
    log::event("auth", {{"client", client_ip_}, {"user", user}, {"mechanism", mechanism}});
    reply(235, "2.7.0", "Authentication successful");
    co_return Next::go_on;
  }
  ++auth_failures_;
  rate.allow(policy::RateKind::login_failure, user_key, std::numeric_limits<unsigned>::max(), wall_clock_us() / 1000);
  log::event("auth_failed", {{"client", client_ip_}, {"user", user}, {"mechanism", mechanism},
                             {"failures", auth_failures_}, {"user_locked", user_locked ? "yes" : "no"}});
  // A delay per failure slows password guessing; at the limit the client
  // goes, and its address is refused for a while.
  if (config.failure_delay_ms > 0) co_await worker_.loop().sleep(config.failure_delay_ms);
  if (auth_failures_ >= config.max_failures) {
    worker_.context().auth_blocks.block(client_ip_, wall_clock_us() + config.failure_block_time_ms * 1000);
    log::event("connection_rejected", {{"client", client_ip_}, {"reason", "too many failed logins"}});
    reply(421, "4.7.0", "Too many failed authentication attempts, closing connection");
    co_return Next::close;
  }
  co_return fail(535, "5.7.8", "Authentication credentials invalid");
}

}  // namespace tern::smtp
