// One inbound SMTP session (RFC 5321), as a coroutine that reads top to
// bottom: banner, then one command after another until QUIT, an error
// limit, a timeout, or shutdown.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mta/io/connection.h"
#include "mta/io/stoppable_session.h"
#include "mta/io/task.h"
#include "mta/server_context.h"
#include "mta/smtp/command.h"
#include "mta/smtp/data_reader.h"
#include "mta/smtp/params.h"
#include "mta/smtp/reply.h"
#include "queue/envelope.h"

namespace tern {
class Worker;
}

namespace tern::smtp {

// Spawned by the worker for each accepted connection.
io::Task<void> run_session(Worker& worker, io::UniqueFd fd, ListenerKind listener);

class Session final : public io::StoppableSession {
 public:
  Session(Worker& worker, io::UniqueFd fd, ListenerKind listener);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  io::Task<void> run();
  // Shutdown: an idle session answers 421 and closes now; one with a
  // transaction open finishes it first.
  void request_stop() override;

 private:
  enum class Next { go_on, close };

  io::Task<Next> dispatch(const Command& cmd);
  Next ehlo(const Command& cmd, bool extended);
  Next mail(const Command& cmd);
  Next rcpt(const Command& cmd);
  io::Task<Next> data(const Command& cmd);
  io::Task<Next> bdat(const Command& cmd);
  io::Task<Next> starttls(const Command& cmd);
  io::Task<Next> etrn(const Command& cmd);
  io::Task<Next> auth(const Command& cmd);

  // Before the greeting: temporary blocks, rate limits, connection
  // restrictions (deny list, DNSBL; with restrictions.override a refused
  // client may still authenticate), implicit TLS. False: close.
  io::Task<bool> admit();
  // A SASL response (RFC 4954 §4): the initial response when the client
  // gave one, else a line read after "334 challenge"; nullopt when the
  // connection ended.
  io::Task<std::optional<std::string>> sasl_response(std::optional<std::string> initial, std::string_view challenge);
  bool auth_offered() const;
  bool in_pop_window() const;
  RelayClient relay_client() const;

  // Body handling shared by DATA and BDAT.
  void begin_content(DataReader::Mode mode);
  io::Task<void> spill_chunk_if_full();  // a refused write sets store_failure_
  Reply storage_failure_reply() const;     // 452 4.3.1 when storage is short, else 451 4.3.0
  io::Task<void> finish_content();       // replies 250 queued / the refusal
  io::Task<void> discard_content();
  io::Task<io::IoStatus> fill_flushing(int64_t timeout_ms);

  void reply(int code, std::string_view enhanced, std::string_view text);
  void reply(const Reply& r) { reply(r.code, r.enhanced, r.text); }
  bool count_error();  // true when the error limit is reached
  // Replies with an error; at the error limit also 421 and Next::close.
  Next fail(int code, std::string_view enhanced, std::string_view text);
  void reset_transaction();
  const Config::Smtp& limits() const;

  Worker& worker_;
  std::shared_ptr<const Settings> settings_;
  io::Connection conn_;
  ListenerKind listener_;
  std::string client_ip_;
  std::string auth_user_;       // after a successful AUTH
  unsigned auth_failures_ = 0;
  std::string restricted_;      // why a connection restriction refuses this client, lifted by AUTH
  ConnectionLimiter::Slot slot_;
  std::string helo_;
  bool esmtp_ = false;
  unsigned errors_ = 0;
  bool idle_ = false;          // waiting for a command with no transaction open
  bool stop_requested_ = false;
  bool quit_ = false;

  // The transaction.
  bool has_mail_ = false;
  MailArgument mail_;
  std::vector<queue::Recipient> recipients_;
  std::string queue_id_;
  std::optional<DataReader> reader_;
  uint32_t chunks_written_ = 0;
  uint64_t stored_bytes_ = 0;
  std::string pending_chunk_;       // starts with our Received: header
  bool bdat_active_ = false;
  std::optional<Reply> bdat_failure_;  // later chunks of a failed BDAT transaction get this
  // The spool refused a chunk: the rest of the content is read but not
  // stored, and the transaction is answered with this at its end.
  std::optional<Reply> store_failure_;
  int64_t content_started_us_ = 0;
};

}  // namespace tern::smtp
