// One tern-sink SMTP session: a coroutine that reads top to bottom. It
// accepts everything well-formed (it is a sink), counts what it accepted,
// and injects the faults the plan says at the six points of the dialogue.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "mta/io/connection.h"
#include "mta/io/task.h"
#include "mta/smtp/command.h"
#include "mta/smtp/data_reader.h"
#include "mta/smtp/reply.h"
#include "tools/tern_sink/sink_worker.h"

namespace tern::sink {

// Runs one session on `worker`'s loop; spawned per accepted connection.
io::Task<void> run_sink_session(SinkWorker& worker, io::UniqueFd fd);

class SinkSession {
 public:
  SinkSession(SinkWorker& worker, io::UniqueFd fd);
  ~SinkSession();
  SinkSession(const SinkSession&) = delete;
  SinkSession& operator=(const SinkSession&) = delete;

  io::Task<void> run();
  // Shutdown: the pending or next read sees EOF and the session ends.
  void request_stop() { conn_.shutdown_read(); }

 private:
  enum class Next { go_on, close };
  // What the fault plan did with an event: nothing (reply as usual), the
  // injected reply was written instead, or the connection must close
  // (a drop, or an injected 421).
  struct Injected {
    enum class Action { none, replied, close } action = Action::none;
    int code = 0;
  };

  io::Task<Injected> inject(Point p);
  void reply(int code, std::string_view enhanced, std::string_view text);
  void reply(const smtp::Reply& r) { reply(r.code, r.enhanced, r.text); }
  bool advertises(Extension e) const { return shared_.options.advertises(e); }
  bool storing() const { return shared_.store != nullptr; }

  io::Task<Next> dispatch(const smtp::Command& cmd);
  io::Task<Next> ehlo(const smtp::Command& cmd, bool extended);
  io::Task<Next> mail(const smtp::Command& cmd);
  io::Task<Next> rcpt(const smtp::Command& cmd);
  io::Task<Next> data(const smtp::Command& cmd);
  io::Task<Next> bdat(const smtp::Command& cmd);
  io::Task<Next> starttls(const smtp::Command& cmd);
  io::Task<Next> finish_message();

  void begin_content(smtp::DataReader::Mode mode);
  // Moves the reader's output to content_: all of it when storing, else
  // only the header section (for the X-Tern-Bench-Sent stamp).
  void take_content();
  void reset_transaction();

  SinkWorker& worker_;
  const SinkShared& shared_;
  SinkStats& stats_;
  io::Connection conn_;
  const int64_t timeout_ms_;
  std::string line_;
  bool greeted_ = false;
  bool esmtp_ = false;
  // After a non-421 fault on the banner: RFC 5321 §3.1, only QUIT is served.
  bool refuse_all_ = false;
  // The transaction.
  bool has_mail_ = false;
  bool smtputf8_ = false;
  uint64_t recipient_count_ = 0;
  Envelope envelope_;  // filled only when storing
  std::optional<smtp::DataReader> reader_;
  std::string content_;  // kept across messages: its capacity is reused
  bool head_complete_ = false;
  // A refused BDAT message: every further chunk of it gets this reply.
  std::optional<smtp::Reply> bdat_failure_;
};

}  // namespace tern::sink
