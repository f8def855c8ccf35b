#include "mta/delivery/smtp_client.h"

#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "mta/delivery/client_transaction.h"
#include "mta/delivery/dot_stuffing.h"

namespace tern::delivery {

namespace {

using Clock = std::chrono::steady_clock;

// A reply line, CRLF included. RFC 5321 section 4.5.3.1.5 allows 512
// octets; real servers send longer text, but never this much.
constexpr size_t kMaxReplyLine = 4096;
// Lines of one reply: a long EHLO reply has twenty.
constexpr unsigned kMaxReplyLines = 128;
// QUIT is a courtesy: do not wait for a slow server's goodbye.
constexpr int64_t kQuitTimeoutMs = 5'000;
// The content goes out in pieces of this much, so it is never copied whole.
constexpr size_t kContentPiece = size_t{256} * 1024;

enum class ReplyStatus { ok, eof, timeout, error, malformed };

ReplyStatus status_of(io::IoStatus st) {
  switch (st) {
    case io::IoStatus::ok: return ReplyStatus::ok;
    case io::IoStatus::eof: return ReplyStatus::eof;
    case io::IoStatus::timeout: return ReplyStatus::timeout;
    case io::IoStatus::too_long: return ReplyStatus::malformed;
    case io::IoStatus::error: break;
  }
  return ReplyStatus::error;
}

// Why no reply came, for the log and the DSN: "timeout waiting for the reply to RCPT TO".
std::string no_reply_text(ReplyStatus st, std::string_view awaited) {
  std::string text;
  switch (st) {
    case ReplyStatus::timeout: text = "timeout waiting for "; break;
    case ReplyStatus::eof: text = "connection closed by the server while waiting for "; break;
    case ReplyStatus::malformed: text = "malformed reply while waiting for "; break;
    case ReplyStatus::ok:
    case ReplyStatus::error: text = "connection error while waiting for "; break;
  }
  text += awaited;
  return text;
}

// RFC 3463: X.4.2 "bad connection" (established, then timed out or lost),
// X.5.0 a protocol error.
std::string_view no_reply_enhanced(ReplyStatus st) { return st == ReplyStatus::malformed ? "4.5.0" : "4.4.2"; }

// EHLO refused this way means the server does not know it (RFC 5321
// section 3.2): HELO instead. Other refusals are the server's answer.
bool ehlo_unknown(int code) { return code == 500 || code == 501 || code == 502 || code == 504 || code == 550; }

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace

struct SmtpClient::State {
  State(io::Loop& event_loop, const ClientSettings& client_settings)
      : loop(event_loop), settings(client_settings) {}

  io::Loop& loop;
  const ClientSettings settings;  // a copy: the client may outlive the caller's settings
  std::unique_ptr<io::Connection> conn;
  smtp::ReplyParser parser;
  std::string line;
  smtp::EhloInfo capabilities;
  // The dialogue is in step and the server has not closed it.
  bool usable = false;
  bool encrypted = false;
  // The last transaction did not end with a 2xx after its content.
  bool reset_needed = false;

  // ---- the session: connect, greeting, EHLO, STARTTLS, AUTH ----

  io::Task<std::optional<ClientError>> connect(const ClientTarget& target) {
    auto created = io::client_socket(target.address);
    if (!created) co_return ClientError{false, 0, "4.4.1", "cannot create a socket: " + created.error(), "connect"};
    io::UniqueFd socket(created.value());
    // The source address applies to its own family only: an IPv4 address
    // cannot be the source of an IPv6 connection.
    if (settings.bind_address && settings.bind_address->addr.ss_family == target.address.addr.ss_family) {
      const io::Endpoint& source = *settings.bind_address;
      // The port is picked at connect(), per destination: binding does not
      // use up an ephemeral port of its own for every connection.
      const int one = 1;
      setsockopt(socket.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      if (::bind(socket.get(), reinterpret_cast<const sockaddr*>(&source.addr), source.len) != 0)
        co_return ClientError{false, 0, "4.3.0", "cannot bind to " + source.text + ": " + std::strerror(errno),
                              "connect"};
    }
    const int rc = co_await loop.connect(socket.get(), target.address, settings.connect_timeout_ms);
    if (rc < 0) {
      const bool timed_out = rc == -ECANCELED || rc == -ETIME;
      co_return ClientError{false, 0, "4.4.1",
                            "connect to " + target.address.text + ": " + (timed_out ? "timeout" : std::strerror(-rc)),
                            "connect"};
    }
    io::set_nodelay(socket.get());
    conn = std::make_unique<io::Connection>(loop, std::move(socket));
    // Pending commands are flushed by the next read: within this.
    conn->set_write_timeout(settings.command_timeout_ms);
    usable = true;
    co_return std::nullopt;
  }

  // Everything after the connection is made, up to a session ready for mail.
  io::Task<std::optional<ClientError>> set_up(const ClientTarget& target) {
    std::optional<ClientError> failure = co_await greet();
    if (failure) co_return failure;
    failure = co_await hello();
    if (failure) co_return failure;
    failure = co_await secure(target);
    if (failure) co_return failure;
    if (!target.auth) co_return std::nullopt;
    failure = co_await authenticate(*target.auth);
    co_return failure;
  }

  io::Task<std::optional<ClientError>> greet() {
    const ReplyStatus st = co_await read_reply(settings.greeting_timeout_ms);
    if (st != ReplyStatus::ok) co_return lost(st, "the greeting", "greeting");
    if (parser.reply().code == 220) co_return std::nullopt;
    co_return refused(parser.reply(), "greeting");
  }

  // EHLO; HELO when the server does not know EHLO (then no extensions).
  io::Task<std::optional<ClientError>> hello() {
    const std::string ehlo = "EHLO " + settings.helo_name + "\r\n";
    ReplyStatus st = co_await command(ehlo, settings.command_timeout_ms);
    if (st != ReplyStatus::ok) co_return lost(st, "the reply to EHLO", "ehlo");
    if (parser.reply().code == 250) {
      capabilities = smtp::parse_ehlo(parser.reply());
      co_return std::nullopt;
    }
    if (!ehlo_unknown(parser.reply().code)) co_return refused(parser.reply(), "ehlo");
    const std::string helo = "HELO " + settings.helo_name + "\r\n";
    st = co_await command(helo, settings.command_timeout_ms);
    if (st != ReplyStatus::ok) co_return lost(st, "the reply to HELO", "helo");
    if (parser.reply().code != 250) co_return refused(parser.reply(), "helo");
    capabilities = smtp::EhloInfo{};
    co_return std::nullopt;
  }

  // STARTTLS as the target's policy asks (RFC 3207), then EHLO again.
  io::Task<std::optional<ClientError>> secure(const ClientTarget& target) {
    if (target.tls == TlsPolicy::none || (target.tls == TlsPolicy::may && target.plain_text_only))
      co_return std::nullopt;
    const bool required = target.tls != TlsPolicy::may;
    if (!capabilities.starttls) {
      if (!required) co_return std::nullopt;
      co_return ClientError{false, 0, "4.7.4", "TLS is required, but the server does not offer STARTTLS", "starttls"};
    }
    const auto& context = target.tls == TlsPolicy::verify ? settings.verifying : settings.opportunistic;
    if (!context) {
      if (!required) co_return std::nullopt;
      co_return ClientError{false, 0, "4.7.5", "TLS is required, but no TLS context is configured for it", "starttls"};
    }
    const ReplyStatus st = co_await command("STARTTLS\r\n", settings.command_timeout_ms);
    if (st != ReplyStatus::ok) co_return lost(st, "the reply to STARTTLS", "starttls");
    const smtp::ParsedReply& reply = parser.reply();
    if (reply.code == 421) co_return refused(reply, "starttls");
    if (reply.code != 220) {
      // Refused: the session is still in plain text, in step, and may go on.
      if (!required) co_return std::nullopt;
      co_return ClientError{false, reply.code, "4.7.4", "TLS is required, but STARTTLS was refused: " + text_of(reply),
                            "starttls"};
    }
    // Nothing the server sent in clear text behind its 220 may be read as
    // if it came inside TLS (RFC 3207 section 5, CVE-2011-0411).
    conn->discard_input();
    const std::shared_ptr<const io::TlsContext> peer_context = context->with_peer_name(target.host_name);
    const io::IoStatus handshake = co_await conn->start_tls(peer_context, settings.command_timeout_ms);
    if (handshake != io::IoStatus::ok) {
      usable = false;
      std::string reason = handshake == io::IoStatus::timeout ? "timeout" : "connection lost";
      if (handshake == io::IoStatus::error && conn->tls()) reason = conn->tls()->last_error();
      ClientError failure{false, 0, "4.7.5", "TLS handshake with " + target.host_name + " failed: " + reason,
                          "starttls"};
      failure.retry_without_tls = target.tls == TlsPolicy::may;
      co_return failure;
    }
    encrypted = true;
    // RFC 3207 section 4.2: forget what the server said before TLS.
    std::optional<ClientError> failure = co_await hello();
    co_return failure;
  }

  // AUTH PLAIN (RFC 4616) when offered, else AUTH LOGIN.
  io::Task<std::optional<ClientError>> authenticate(const Credentials& credentials) {
    std::vector<std::string> lines;  // each after the server's 334 to the one before
    if (capabilities.has_auth("PLAIN")) {
      std::string plain;
      plain += '\0';
      plain += credentials.user;
      plain += '\0';
      plain += credentials.password;
      lines = {"AUTH PLAIN " + base64(plain)};
    } else if (capabilities.has_auth("LOGIN")) {
      lines = {"AUTH LOGIN", base64(credentials.user), base64(credentials.password)};
    } else {
      co_return ClientError{false, 0, "4.7.0",
                            "credentials are configured, but the server offers neither AUTH PLAIN nor AUTH LOGIN",
                            "auth"};
    }
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0 && parser.reply().code != 334) break;
      lines[i] += "\r\n";
      const ReplyStatus st = co_await command(lines[i], settings.command_timeout_ms);
      if (st != ReplyStatus::ok) co_return lost(st, "the reply to AUTH", "auth");
    }
    const smtp::ParsedReply& reply = parser.reply();
    if (reply.code == 235) co_return std::nullopt;
    // A challenge we have no answer to leaves the server waiting for one.
    if (reply.klass() == 3) usable = false;
    co_return refused(reply, "auth");
  }

  // ---- one transaction ----

  io::Task<void> transact(ClientTransaction& tx, std::string_view content) {
    const bool pipelined = capabilities.pipelining;
    // RFC 3030: with CHUNKING the content goes as "BDAT n LAST" and its
    // octets as they are: no 354 to wait for, no dot-stuffing.
    const bool chunked = capabilities.chunking;
    // Small content goes in the same write as MAIL and RCPT, so a message
    // costs one round trip; larger content waits for a recipient to be
    // accepted rather than be sent for nothing.
    const bool content_pipelined = pipelined && chunked && content.size() <= kContentPiece;
    const int64_t timeout = settings.command_timeout_ms;
    conn->write(tx.mail_command());
    if (pipelined) {
      // RFC 2920 section 3.1: MAIL, every RCPT and DATA (or BDAT) in one
      // write; the replies come back in the same order.
      for (size_t k = 0; k < tx.recipient_count(); ++k) conn->write(tx.rcpt_command(k));
      if (content_pipelined) {
        conn->write(tx.bdat_command());
        conn->write(content);
      } else if (!chunked) {
        conn->write("DATA\r\n");
      }
    }
    bool replied = co_await await_reply(tx, timeout, "the reply to MAIL FROM");
    if (!replied) co_return;
    tx.on_mail_reply(parser.reply());
    if (!pipelined && !tx.mail_accepted()) {
      reset_needed = false;  // no transaction was opened
      co_return;
    }
    for (size_t k = 0; k < tx.recipient_count(); ++k) {
      if (!pipelined) conn->write(tx.rcpt_command(k));
      replied = co_await await_reply(tx, timeout, "the reply to RCPT TO");
      if (!replied) co_return;
      tx.on_rcpt_reply(k, parser.reply());
    }
    if (chunked) {
      co_await send_chunk(tx, content, content_pipelined);
      co_return;
    }
    if (!pipelined && tx.accepted_count() == 0) co_return;
    if (!pipelined) conn->write("DATA\r\n");
    replied = co_await await_reply(tx, timeout, "the reply to DATA");
    if (!replied) co_return;
    if (parser.reply().code != 354) {
      tx.on_data_refused(parser.reply());
      co_return;
    }
    if (tx.accepted_count() == 0) {
      // RFC 2920 section 3.1: a pipelined DATA got 354 although no
      // recipient was accepted; an empty message ends it (and is refused).
      conn->write(".\r\n");
      (void)co_await await_reply(tx, timeout, "the reply to an empty message");
      co_return;
    }
    const bool sent = co_await send_content(tx, content);
    if (!sent) co_return;
    replied = co_await await_reply(tx, settings.data_timeout_ms, "the reply to the end of the content");
    if (!replied) co_return;
    tx.on_final_reply(parser.reply());
    reset_needed = parser.reply().klass() != 2;
  }

  // The content as one last chunk (RFC 3030), unless it already went with
  // the envelope, and its reply: the final one. The server answers a BDAT
  // after reading its octets, whatever the answer (554 without a valid
  // recipient), so a pipelined chunk leaves the dialogue in step.
  io::Task<void> send_chunk(ClientTransaction& tx, std::string_view content, bool already_sent) {
    if (!already_sent) {
      if (tx.accepted_count() == 0) co_return;
      conn->write(tx.bdat_command());
      for (size_t at = 0; at < content.size(); at += kContentPiece) {
        conn->write(content.substr(at, kContentPiece));
        const bool sent = co_await flush_content(tx);
        if (!sent) co_return;
      }
    }
    const bool replied = co_await await_reply(tx, settings.data_timeout_ms, "the reply to BDAT");
    if (!replied) co_return;
    tx.on_final_reply(parser.reply());
    reset_needed = parser.reply().klass() != 2;
  }

  io::Task<bool> send_content(ClientTransaction& tx, std::string_view content) {
    DotStuffer stuffer(content);
    std::string piece;
    while (!stuffer.done()) {
      piece.clear();
      stuffer.next(&piece, kContentPiece);
      conn->write(piece);
      const bool sent = co_await flush_content(tx);
      if (!sent) co_return false;
    }
    co_return true;
  }

  io::Task<bool> flush_content(ClientTransaction& tx) {
    const io::IoStatus st = co_await conn->flush(settings.data_timeout_ms);
    if (st == io::IoStatus::ok) co_return true;
    usable = false;
    tx.on_no_reply("4.4.2", st == io::IoStatus::timeout ? "timeout sending the message content"
                                                        : "connection lost while sending the message content");
    co_return false;
  }

  io::Task<bool> reset(ClientTransaction& tx) {
    conn->write("RSET\r\n");
    const bool replied = co_await await_reply(tx, settings.command_timeout_ms, "the reply to RSET");
    if (!replied) co_return false;
    if (parser.reply().klass() != 2) {
      usable = false;  // a server that refuses RSET is not one to send more to
      tx.on_no_reply("4.5.0", "RSET refused: " + text_of(parser.reply()));
      co_return false;
    }
    reset_needed = false;
    co_return true;
  }

  // ---- replies ----

  // One complete reply into parser.reply(), within `timeout_ms` in all.
  io::Task<ReplyStatus> read_reply(int64_t timeout_ms) {
    const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (unsigned n = 0; n < kMaxReplyLines; ++n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      const io::IoStatus st = co_await conn->read_line(&line, kMaxReplyLine, std::max<int64_t>(left, 1));
      if (st != io::IoStatus::ok) co_return status_of(st);
      const smtp::ReplyParser::State parsed = parser.feed(line);
      if (parsed == smtp::ReplyParser::State::complete) co_return ReplyStatus::ok;
      if (parsed == smtp::ReplyParser::State::malformed) co_return ReplyStatus::malformed;
    }
    co_return ReplyStatus::malformed;
  }

  io::Task<ReplyStatus> command(std::string_view text, int64_t timeout_ms) {
    conn->write(text);
    const ReplyStatus st = co_await read_reply(timeout_ms);
    co_return st;
  }

  // A reply within a transaction. False when none came or it was a 421:
  // the recipients still open have their outcome and the connection is done.
  io::Task<bool> await_reply(ClientTransaction& tx, int64_t timeout_ms, std::string_view awaited) {
    const ReplyStatus st = co_await read_reply(timeout_ms);
    if (st != ReplyStatus::ok) {
      usable = false;
      tx.on_no_reply(no_reply_enhanced(st), no_reply_text(st, awaited));
      co_return false;
    }
    if (parser.reply().code == 421) {
      usable = false;
      tx.on_service_closing(parser.reply());
      co_return false;
    }
    co_return true;
  }

  ClientError lost(ReplyStatus st, std::string_view awaited, std::string phase) {
    usable = false;
    return ClientError{false, 0, std::string(no_reply_enhanced(st)), no_reply_text(st, awaited), std::move(phase)};
  }

  // The server said no (or something out of protocol) during the session's set-up.
  ClientError refused(const smtp::ParsedReply& reply, std::string phase) {
    // RFC 5321 section 3.8: after 421 the server closes; no QUIT.
    if (reply.code == 421) usable = false;
    if (reply.klass() == 4 || reply.klass() == 5)
      return ClientError{reply.klass() == 5, reply.code, enhanced_code_of(reply), text_of(reply), std::move(phase)};
    return ClientError{false, reply.code, "4.5.0", "unexpected reply: " + text_of(reply), std::move(phase)};
  }

  io::Task<void> quit() {
    if (conn && usable) {
      conn->write("QUIT\r\n");
      (void)co_await read_reply(std::min(kQuitTimeoutMs, settings.command_timeout_ms));
    }
    usable = false;
    conn.reset();
  }
};

io::Task<Result<std::unique_ptr<SmtpClient>, ClientError>> SmtpClient::open(io::Loop& loop, const ClientTarget& target,
                                                                           const ClientSettings& settings) {
  auto state = std::make_unique<State>(loop, settings);
  std::optional<ClientError> failure = co_await state->connect(target);
  if (failure) co_return std::move(*failure);
  failure = co_await state->set_up(target);
  if (failure) {
    co_await state->quit();
    co_return std::move(*failure);
  }
  co_return std::unique_ptr<SmtpClient>(new SmtpClient(std::move(state)));
}

SmtpClient::SmtpClient(std::unique_ptr<State> state) : state_(std::move(state)) {}

SmtpClient::~SmtpClient() = default;

io::Task<std::vector<RecipientOutcome>> SmtpClient::send(const OutboundMessage& message) {
  State& s = *state_;
  ClientTransaction tx(message, s.capabilities);
  if (tx.settled()) co_return tx.take_outcomes();
  if (!s.usable) {
    tx.on_no_reply("4.4.2", "the connection is no longer usable");
    co_return tx.take_outcomes();
  }
  if (s.reset_needed) {
    const bool reset = co_await s.reset(tx);
    if (!reset) co_return tx.take_outcomes();
  }
  s.reset_needed = true;  // until the transaction ends cleanly
  co_await s.transact(tx, *message.content);
  co_return tx.take_outcomes();
}

bool SmtpClient::usable() const { return state_->usable; }

const smtp::EhloInfo& SmtpClient::capabilities() const { return state_->capabilities; }

bool SmtpClient::encrypted() const { return state_->encrypted; }

io::Task<void> SmtpClient::quit() { co_await state_->quit(); }

}  // namespace tern::delivery
