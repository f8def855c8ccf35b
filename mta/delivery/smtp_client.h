// The SMTP client: one connection to one host, carrying one or more
// transactions (RSET between them). A coroutine on the worker's loop;
// every wait has a deadline (RFC 5321 §4.5.3.2 timeouts).
//
//   auto conn = co_await SmtpClient::open(loop, target, settings);
//   if (!conn) ... conn.error(): temporary or permanent, try the next MX ...
//   auto outcomes = co_await conn.value()->send(message);
//   co_await conn.value()->quit();
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mta/delivery/next_hop.h"
#include "mta/io/connection.h"
#include "mta/io/loop.h"
#include "mta/io/net.h"
#include "mta/io/task.h"
#include "mta/io/tls.h"
#include "mta/smtp/reply_parser.h"
#include "queue/envelope.h"
#include "queue/result.h"

namespace tern::delivery {

struct ClientSettings {
  std::string helo_name;                     // our host name, for EHLO/HELO
  std::optional<io::Endpoint> bind_address;  // outbound source address (port 0), for NAT
  int64_t connect_timeout_ms = 30'000;
  int64_t greeting_timeout_ms = 300'000;     // RFC 5321 §4.5.3.2.1: 5 minutes
  int64_t command_timeout_ms = 300'000;      // EHLO, MAIL, RCPT, RSET, AUTH, STARTTLS: 5 minutes
  int64_t data_timeout_ms = 600'000;         // content sent and the final reply: 10 minutes
  // TLS contexts: `opportunistic` does not verify and takes any suite
  // (may, encrypt); `verifying` checks chain and name and takes strong
  // suites only (verify; io::TlsContext::create_verifying_client). Null:
  // encrypt resp. verify fails (temporary, 4.7.5); may goes on in plain
  // text.
  std::shared_ptr<const io::TlsContext> opportunistic;
  std::shared_ptr<const io::TlsContext> verifying;
};

// The host to connect to, with the hop's policy.
struct ClientTarget {
  io::Endpoint address;   // ip:port
  std::string host_name;  // the MX or relay name: SNI and certificate name check
  TlsPolicy tls = TlsPolicy::may;
  // AUTH PLAIN (preferred) or LOGIN when the server offers one. Sent in
  // plain text too when the policy does not ask for TLS, as Postfix does
  // when so configured: the hop's policy is the administrator's choice.
  std::optional<Credentials> auth;
  // Policy may only: do not even try STARTTLS. A failed TLS handshake
  // leaves nothing to go on with on that connection, so open() fails with
  // ClientError::retry_without_tls and the caller connects again with this
  // set (RFC 7435: opportunistic TLS falls back to plain text).
  bool plain_text_only = false;
};

// Why a connection could not be used. `permanent` only for a 5xx greeting
// or EHLO/HELO, or an AUTH refused with 5xx; everything else (refused
// connection, timeout, 4xx greeting, TLS required but not offered or failed)
// is temporary, and the caller tries the next host. Our enhanced codes:
// 4.4.1 no connection, 4.3.0 bind_address unusable, 4.4.2 connection lost
// or timed out, 4.5.0 a reply
// out of protocol, 4.7.4 STARTTLS required but not offered or refused
// (RFC 3463 "security features not supported"), 4.7.5 TLS handshake or
// certificate verification failed ("cryptographic failure"), 4.7.0 AUTH
// with no mechanism in common.
struct ClientError {
  bool permanent = false;
  int code = 0;          // the remote reply's code, 0 when there was none
  std::string enhanced;  // e.g. "4.4.1"; ours when the remote gave none
  std::string text;      // for the log and the DSN: the remote reply (without its codes), or what happened
  std::string phase;     // "connect", "greeting", "ehlo", "helo", "starttls", "auth"
  // Policy may, and the TLS handshake failed: connecting again with
  // ClientTarget::plain_text_only can deliver.
  bool retry_without_tls = false;
};

// One message to send on an open connection: its envelope, the recipients
// (indices into env.recipients) that go to this host, and its content as
// stored (CRLF lines, not dot-stuffed).
struct OutboundMessage {
  const queue::Envelope* envelope = nullptr;
  std::vector<size_t> recipients;
  const std::string* content = nullptr;
};

struct RecipientOutcome {
  size_t recipient = 0;  // index into envelope->recipients
  enum class Kind : uint8_t { delivered, temporary, permanent } kind = Kind::temporary;
  int code = 0;          // remote reply code, 0 when none (connection lost, timeout, ours)
  std::string enhanced;  // "2.0.0", "4.4.2", "5.1.1", "5.3.4"...: the remote's, or its class's "X.0.0"
  std::string text;      // the remote reply (one line, without its codes) or our reason
};

class SmtpClient {
 public:
  // Connects, reads the greeting, EHLO (HELO when EHLO gets a 5xx other
  // than 421... see RFC 5321 §4.1.4), STARTTLS as the policy asks, AUTH when
  // credentials are given.
  static io::Task<Result<std::unique_ptr<SmtpClient>, ClientError>> open(io::Loop& loop, const ClientTarget& target,
                                                                        const ClientSettings& settings);
  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // One transaction: MAIL, RCPTs, DATA, content. Pipelined when the server
  // offers PIPELINING. When it offers CHUNKING the content goes as one
  // "BDAT n LAST" (RFC 3030) instead of DATA, not dot-stuffed; with
  // PIPELINING too, content up to 256 KiB goes in the same write as MAIL
  // and RCPT: one round trip per message. One outcome per recipient of `message`. A message
  // over the server's SIZE fails 5.3.4 without being sent; an SMTPUTF8
  // message to a server without SMTPUTF8 fails 5.6.7; DSN parameters
  // (NOTIFY, ORCPT, RET, ENVID) are passed on when the server offers DSN.
  // After a failure that leaves the connection unusable (timeout, 421,
  // lost connection) usable() is false; the recipients without an outcome
  // then fail temporarily (4.4.2; 4.5.0 for a malformed reply). RSET goes
  // first only when the previous transaction did not end with a 2xx after
  // its content.
  io::Task<std::vector<RecipientOutcome>> send(const OutboundMessage& message);
  bool usable() const;
  const smtp::EhloInfo& capabilities() const;
  bool encrypted() const;
  // QUIT (best effort, short deadline) and close.
  io::Task<void> quit();

 private:
  struct State;
  explicit SmtpClient(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace tern::delivery
