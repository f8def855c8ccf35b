#include "tools/tern_sink/sink_session.h"

#include <algorithm>
#include <limits>

#include "mta/smtp/params.h"
#include "tools/loadkit/bench_header.h"

namespace tern::sink {
namespace {

// A command line, CRLF included: room for SMTPUTF8 paths and every parameter.
constexpr size_t kMaxCommandLine = 4096;
// Without --maildir/--mbox only the header section is kept (for the
// X-Tern-Bench-Sent stamp), and at most this much of it.
constexpr size_t kMaxHeaderKept = size_t{64} * 1024;
constexpr uint32_t kDelaySliceMs = 100;

}  // namespace

io::Task<void> run_sink_session(SinkWorker& worker, io::UniqueFd fd) {
  SinkSession session(worker, std::move(fd));
  co_await session.run();
}

SinkSession::SinkSession(SinkWorker& worker, io::UniqueFd fd)
    : worker_(worker),
      shared_(worker.shared()),
      stats_(worker.stats()),
      conn_(worker.loop(), std::move(fd)),
      timeout_ms_(int64_t{shared_.options.timeout_s} * 1000) {
  conn_.set_write_timeout(timeout_ms_);
  worker_.attach(this);
}

SinkSession::~SinkSession() { worker_.detach(this); }

void SinkSession::reply(int code, std::string_view enhanced, std::string_view text) {
  // Appended piecewise into the output buffer: no temporary per reply.
  char digits[4] = {char('0' + code / 100), char('0' + code / 10 % 10), char('0' + code % 10), ' '};
  conn_.write({digits, 4});
  if (!enhanced.empty() && advertises(kEnhancedStatusCodes)) {
    conn_.write(enhanced);
    conn_.write(" ");
  }
  conn_.write(text);
  conn_.write("\r\n");
}

io::Task<SinkSession::Injected> SinkSession::inject(Point p) {
  FaultDecision d = shared_.faults.next(p);
  const auto i = static_cast<size_t>(p);
  if (d.delay_ms != 0) {
    ++stats_.delays[i];
    // Replies already due go out now: only this reply is late.
    if (conn_.has_output()) {
      if (co_await conn_.flush(timeout_ms_) != io::IoStatus::ok) co_return Injected{Injected::Action::close, 0};
    }
    // In slices, so a shutdown does not wait for a long delay to end.
    for (uint32_t left = d.delay_ms; left > 0 && !worker_.stopping();) {
      uint32_t slice = std::min(left, kDelaySliceMs);
      co_await worker_.loop().sleep(slice);
      left -= slice;
    }
    if (worker_.stopping()) co_return Injected{Injected::Action::close, 0};
  }
  if (d.drop) {
    ++stats_.drops[i];
    co_return Injected{Injected::Action::close, 0};
  }
  if (d.reply_code != 0) {
    ++stats_.faults[i];
    reply(fault_reply(d.reply_code));
    // RFC 5321 §3.8: the server closes the connection after sending 421.
    auto action = d.reply_code == 421 ? Injected::Action::close : Injected::Action::replied;
    co_return Injected{action, d.reply_code};
  }
  co_return Injected{};
}

io::Task<void> SinkSession::run() {
  ++stats_.connections;
  auto greeting = co_await inject(Point::banner);
  if (greeting.action == Injected::Action::replied) refuse_all_ = true;
  if (greeting.action == Injected::Action::none) conn_.write(shared_.banner);
  if (greeting.action != Injected::Action::close) {
    for (;;) {
      auto st = co_await conn_.read_line(&line_, kMaxCommandLine, timeout_ms_);
      if (st == io::IoStatus::too_long) {
        reply(500, "5.5.2", "Line too long");
        continue;
      }
      if (st == io::IoStatus::timeout) {
        reply(421, "4.4.2", shared_.options.hostname + " Timeout waiting for a command, closing connection");
        break;
      }
      if (st != io::IoStatus::ok) break;
      smtp::Command cmd = smtp::parse_command(line_);
      if (refuse_all_) {
        if (cmd.verb == smtp::Verb::quit) {
          reply(221, "2.0.0", shared_.options.hostname + " closing connection");
          break;
        }
        reply(503, "5.5.1", "Bad sequence of commands: only QUIT is accepted");
        continue;
      }
      if (co_await dispatch(cmd) == Next::close) break;
    }
  }
  co_await conn_.flush(timeout_ms_);
}

io::Task<SinkSession::Next> SinkSession::dispatch(const smtp::Command& cmd) {
  using smtp::Verb;
  switch (cmd.verb) {
    case Verb::ehlo:
    case Verb::helo:
      co_return co_await ehlo(cmd, cmd.verb == Verb::ehlo);
    case Verb::mail:
      co_return co_await mail(cmd);
    case Verb::rcpt:
      co_return co_await rcpt(cmd);
    case Verb::data:
      co_return co_await data(cmd);
    case Verb::bdat:
      co_return co_await bdat(cmd);
    case Verb::starttls:
      co_return co_await starttls(cmd);
    case Verb::rset:
      reset_transaction();
      reply(250, "2.0.0", "Ok");
      co_return Next::go_on;
    case Verb::noop:
      reply(250, "2.0.0", "Ok");
      co_return Next::go_on;
    case Verb::quit:
      reply(221, "2.0.0", shared_.options.hostname + " closing connection");
      co_return Next::close;
    case Verb::help:
      reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS");
      co_return Next::go_on;
    case Verb::vrfy:
      reply(252, "2.5.0", "Cannot VRFY user, but will accept message");
      co_return Next::go_on;
    case Verb::unknown:
      reply(500, "5.5.2", "Command unrecognized");
      co_return Next::go_on;
    default:
      reply(502, "5.5.1", "Command not implemented");
      co_return Next::go_on;
  }
}

io::Task<SinkSession::Next> SinkSession::ehlo(const smtp::Command& cmd, bool extended) {
  auto parsed = smtp::parse_helo_argument(cmd.argument);
  if (auto* err = std::get_if<smtp::Reply>(&parsed)) {
    reply(*err);
    co_return Next::go_on;
  }
  reset_transaction();
  auto injected = co_await inject(Point::helo);
  if (injected.action == Injected::Action::close) co_return Next::close;
  if (injected.action == Injected::Action::replied) {
    greeted_ = false;
    co_return Next::go_on;
  }
  greeted_ = true;
  esmtp_ = extended;
  if (!extended) {
    conn_.write(shared_.helo_reply);
  } else {
    conn_.write(conn_.tls() ? shared_.ehlo_reply_tls : shared_.ehlo_reply);
  }
  co_return Next::go_on;
}

io::Task<SinkSession::Next> SinkSession::mail(const smtp::Command& cmd) {
  if (!greeted_) {
    reply(503, "5.5.1", "Send HELO/EHLO first");
    co_return Next::go_on;
  }
  if (has_mail_) {
    reply(503, "5.5.1", "Nested MAIL command");
    co_return Next::go_on;
  }
  auto parsed = smtp::parse_mail_argument(cmd.argument);
  if (auto* err = std::get_if<smtp::Reply>(&parsed)) {
    reply(*err);
    co_return Next::go_on;
  }
  auto& m = std::get<smtp::MailArgument>(parsed);
  // A parameter of an extension we did not advertise is refused, so a
  // sender that ignores the EHLO reply is caught (RFC 5321 §4.1.1.11: 555).
  bool size_param = m.has_size, body_param = !m.body.empty(), dsn_params = !m.ret.empty() || !m.envid.empty();
  if ((size_param || body_param || m.smtputf8 || dsn_params) && !esmtp_) {
    reply(555, "5.5.4", "MAIL parameters need EHLO");
    co_return Next::go_on;
  }
  if ((size_param && !advertises(kSize)) || (body_param && !advertises(k8BitMime)) ||
      (m.smtputf8 && !advertises(kSmtpUtf8)) || (dsn_params && !advertises(kDsn))) {
    reply(555, "5.5.4", "MAIL parameter of an extension not advertised");
    co_return Next::go_on;
  }
  if (size_param && m.size > shared_.options.max_size) {
    reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
    co_return Next::go_on;
  }
  auto injected = co_await inject(Point::mail);
  if (injected.action == Injected::Action::close) co_return Next::close;
  if (injected.action == Injected::Action::replied) co_return Next::go_on;
  has_mail_ = true;
  smtputf8_ = m.smtputf8;
  if (storing()) {
    envelope_.sender = m.sender.str();
    envelope_.mail_params = smtp::parameter_text(cmd.argument);
  }
  reply(250, "2.1.0", "Ok");
  co_return Next::go_on;
}

io::Task<SinkSession::Next> SinkSession::rcpt(const smtp::Command& cmd) {
  if (!has_mail_) {
    reply(503, "5.5.1", "Need MAIL before RCPT");
    co_return Next::go_on;
  }
  if (reader_) {
    reply(503, "5.5.1", "RCPT not allowed during BDAT");
    co_return Next::go_on;
  }
  auto parsed = smtp::parse_rcpt_argument(cmd.argument, smtputf8_);
  if (auto* err = std::get_if<smtp::Reply>(&parsed)) {
    reply(*err);
    co_return Next::go_on;
  }
  auto& r = std::get<smtp::RcptArgument>(parsed);
  if ((r.notify != 0 || !r.orcpt.empty()) && (!esmtp_ || !advertises(kDsn))) {
    reply(555, "5.5.4", "RCPT parameters need EHLO and DSN");
    co_return Next::go_on;
  }
  auto injected = co_await inject(Point::rcpt);
  if (injected.action == Injected::Action::close) co_return Next::close;
  if (injected.action == Injected::Action::replied) co_return Next::go_on;
  ++recipient_count_;
  if (storing()) {
    envelope_.recipients.push_back(r.recipient.str());
    envelope_.rcpt_params.emplace_back(smtp::parameter_text(cmd.argument));
  }
  reply(250, "2.1.5", "Ok");
  co_return Next::go_on;
}

void SinkSession::begin_content(smtp::DataReader::Mode mode) {
  // A sink is lenient: only the size is limited.
  smtp::ContentLimits limits;
  limits.max_size = shared_.options.max_size;
  limits.max_line_length = std::numeric_limits<unsigned>::max();
  limits.max_received = std::numeric_limits<unsigned>::max();
  limits.allow_bare_lf = true;
  reader_.emplace(mode, limits);
  content_.clear();
  head_complete_ = false;
}

void SinkSession::take_content() {
  if (reader_->pending_output() == 0) return;
  if (storing()) {
    if (content_.empty()) {
      content_ = reader_->take_output();
    } else {
      content_ += reader_->take_output();
    }
    return;
  }
  if (head_complete_) {
    (void)reader_->take_output();  // discarded: that is what a sink does
    return;
  }
  size_t search_from = content_.size() >= 3 ? content_.size() - 3 : 0;
  content_ += reader_->take_output();
  head_complete_ = content_.find("\r\n\r\n", search_from) != std::string::npos || content_.size() >= kMaxHeaderKept;
}

void SinkSession::reset_transaction() {
  has_mail_ = false;
  smtputf8_ = false;
  recipient_count_ = 0;
  envelope_.sender.clear();
  envelope_.recipients.clear();
  envelope_.mail_params.clear();
  envelope_.rcpt_params.clear();
  reader_.reset();
  content_.clear();
  head_complete_ = false;
  bdat_failure_.reset();
}

io::Task<SinkSession::Next> SinkSession::data(const smtp::Command& cmd) {
  if (!cmd.argument.empty()) {
    reply(501, "5.5.4", "Syntax: DATA");
    co_return Next::go_on;
  }
  if (!has_mail_) {
    reply(503, "5.5.1", "Need MAIL command");
    co_return Next::go_on;
  }
  if (reader_) {
    reply(503, "5.5.1", "DATA not allowed after BDAT");
    co_return Next::go_on;
  }
  if (recipient_count_ == 0) {
    reply(554, "5.5.1", "No valid recipients");
    co_return Next::go_on;
  }
  auto injected = co_await inject(Point::data);
  if (injected.action == Injected::Action::close) co_return Next::close;
  if (injected.action == Injected::Action::replied) {
    reset_transaction();  // the transaction failed at DATA
    co_return Next::go_on;
  }
  reply(354, "", "End data with <CR><LF>.<CR><LF>");
  if (co_await conn_.flush(timeout_ms_) != io::IoStatus::ok) co_return Next::close;
  begin_content(smtp::DataReader::Mode::data);
  for (;;) {
    auto in = conn_.buffered();
    if (!in.empty()) conn_.consume(reader_->feed(in));
    take_content();
    if (reader_->done()) break;
    auto st = co_await conn_.fill(timeout_ms_);
    if (st == io::IoStatus::ok) continue;
    if (st == io::IoStatus::timeout)
      reply(421, "4.4.2", shared_.options.hostname + " Timeout during DATA, closing connection");
    co_return Next::close;
  }
  co_return co_await finish_message();
}

io::Task<SinkSession::Next> SinkSession::bdat(const smtp::Command& cmd) {
  auto parsed = smtp::parse_bdat_argument(cmd.argument);
  if (auto* err = std::get_if<smtp::Reply>(&parsed)) {
    reply(*err);
    // The chunk's length is unknown, so its bytes cannot be told from
    // commands: the only safe course is to end the session.
    reply(421, "4.7.0", "Cannot continue after a malformed BDAT, closing connection");
    co_return Next::close;
  }
  auto arg = std::get<smtp::BdatArgument>(parsed);
  std::optional<smtp::Reply> refusal;
  if (!advertises(kChunking)) {
    refusal = smtp::Reply{502, "5.5.1", "BDAT not available: CHUNKING is not advertised"};
  } else if (!has_mail_) {
    refusal = smtp::Reply{503, "5.5.1", "Need MAIL command"};
  } else if (recipient_count_ == 0) {
    refusal = smtp::Reply{554, "5.5.1", "No valid recipients"};
  } else if (bdat_failure_) {
    refusal = bdat_failure_;
  }
  if (!refusal && !reader_) begin_content(smtp::DataReader::Mode::bdat);
  // Consume exactly arg.size octets (the chunk), whatever the reply will be.
  uint64_t remaining = arg.size;
  while (remaining > 0) {
    auto in = conn_.buffered();
    if (!in.empty()) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining, in.size()));
      if (!refusal) {
        reader_->feed(in.substr(0, n));
        take_content();
      }
      conn_.consume(n);
      remaining -= n;
      continue;
    }
    // Replies to earlier chunks go out before we wait for this one's octets.
    if (conn_.has_output()) {
      if (co_await conn_.flush(timeout_ms_) != io::IoStatus::ok) co_return Next::close;
    }
    auto st = co_await conn_.fill(timeout_ms_);
    if (st == io::IoStatus::ok) continue;
    if (st == io::IoStatus::timeout)
      reply(421, "4.4.2", shared_.options.hostname + " Timeout during BDAT, closing connection");
    co_return Next::close;
  }
  if (refusal) {
    reply(*refusal);
    if (bdat_failure_ && arg.last) reset_transaction();
    co_return Next::go_on;
  }
  auto injected = co_await inject(Point::data);
  if (injected.action == Injected::Action::close) co_return Next::close;
  if (injected.action == Injected::Action::replied) {
    if (arg.last) {
      reset_transaction();
    } else {
      bdat_failure_ = fault_reply(injected.code);  // RFC 3030: the rest of this message is refused
    }
    co_return Next::go_on;
  }
  if (arg.last) {
    reader_->finish();
    take_content();
    co_return co_await finish_message();
  }
  if (auto failure = reader_->verdict()) {
    bdat_failure_ = failure;
    reply(*failure);
    co_return Next::go_on;
  }
  reply(250, "2.0.0", std::to_string(arg.size) + " octets received");
  co_return Next::go_on;
}

io::Task<SinkSession::Next> SinkSession::finish_message() {
  if (auto refusal = reader_->verdict()) {
    reply(*refusal);
    reset_transaction();
    co_return Next::go_on;
  }
  auto injected = co_await inject(Point::dot);
  if (injected.action == Injected::Action::close) co_return Next::close;
  if (injected.action == Injected::Action::replied) {
    reset_transaction();
    co_return Next::go_on;
  }
  const int64_t arrival_us = loadkit::unix_micros();
  const auto sent_us = find_sent_stamp(content_);
  if (storing()) {
    StoreAwait write{worker_.loop(), *shared_.store, std::move(envelope_), std::move(content_)};
    if (!co_await write) {
      ++stats_.store_errors;
      reply(451, "4.3.0", "Local error in processing: message not stored");
      reset_transaction();
      co_return Next::go_on;
    }
  }
  stats_.record_message(arrival_us, recipient_count_, reader_->size());
  if (sent_us) stats_.e2e_us.record(static_cast<uint64_t>(std::max<int64_t>(0, arrival_us - *sent_us)));
  reply(250, "2.0.0", "Ok: queued");
  reset_transaction();
  co_return Next::go_on;
}

io::Task<SinkSession::Next> SinkSession::starttls(const smtp::Command& cmd) {
  if (!shared_.tls) {
    reply(502, "5.5.1", "STARTTLS not available");
    co_return Next::go_on;
  }
  if (!cmd.argument.empty()) {
    reply(501, "5.5.4", "Syntax: STARTTLS");
    co_return Next::go_on;
  }
  if (conn_.tls()) {
    reply(503, "5.5.1", "TLS already active");
    co_return Next::go_on;
  }
  reply(220, "2.0.0", "Ready to start TLS");
  if (co_await conn_.flush(timeout_ms_) != io::IoStatus::ok) co_return Next::close;
  // Anything pipelined after STARTTLS arrived in clear text and must not be
  // executed inside the TLS session (CVE-2011-0411 class).
  conn_.discard_input();
  // A statement of its own: g++ 12 miscompiles a co_await whose argument
  // temporaries (the shared_ptr copy) live in an if-condition.
  auto handshake = co_await conn_.start_tls(shared_.tls, timeout_ms_);
  if (handshake != io::IoStatus::ok) co_return Next::close;
  // RFC 3207 §4.2: forget everything learned before TLS.
  reset_transaction();
  greeted_ = false;
  esmtp_ = false;
  co_return Next::go_on;
}

}  // namespace tern::sink
