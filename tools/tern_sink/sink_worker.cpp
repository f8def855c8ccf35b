#include "tools/tern_sink/sink_worker.h"

#include <unistd.h>

#include "tools/tern_sink/sink_session.h"

namespace tern::sink {
namespace {

std::string build_ehlo_reply(const SinkOptions& o, bool offer_starttls) {
  std::string r = "250-" + o.hostname + "\r\n";
  if (o.advertises(kPipelining)) r += "250-PIPELINING\r\n";
  if (o.advertises(kSize)) r += "250-SIZE " + std::to_string(o.max_size) + "\r\n";
  if (o.advertises(k8BitMime)) r += "250-8BITMIME\r\n";
  if (o.advertises(kEnhancedStatusCodes)) r += "250-ENHANCEDSTATUSCODES\r\n";
  if (o.advertises(kSmtpUtf8)) r += "250-SMTPUTF8\r\n";
  if (o.advertises(kDsn)) r += "250-DSN\r\n";
  if (offer_starttls) r += "250-STARTTLS\r\n";
  if (o.advertises(kChunking)) r += "250-CHUNKING\r\n";
  // The last line of a multi-line reply has a space after the code.
  r.replace(r.rfind("250-"), 4, "250 ");
  return r;
}

}  // namespace

SinkShared::SinkShared(const SinkOptions& opts, FaultPlan& plan, std::shared_ptr<const io::TlsContext> tls_context,
                       MessageStore* message_store)
    : options(opts),
      faults(plan),
      tls(std::move(tls_context)),
      store(message_store),
      banner("220 " + opts.hostname + " ESMTP tern-sink\r\n"),
      ehlo_reply(build_ehlo_reply(opts, tls != nullptr)),
      ehlo_reply_tls(build_ehlo_reply(opts, false)),
      helo_reply("250 " + opts.hostname + "\r\n") {}

SinkWorker::SinkWorker(const SinkShared& shared, unsigned index) : shared_(shared), index_(index) {}

SinkWorker::~SinkWorker() { join(); }

Status SinkWorker::start(const std::vector<io::Endpoint>& endpoints) {
  std::promise<Status> ready;
  auto result = ready.get_future();
  thread_ = std::thread([this, endpoints, &ready] { run(endpoints, &ready); });
  return result.get();
}

void SinkWorker::run(const std::vector<io::Endpoint>& endpoints, std::promise<Status>* ready) {
  // The ring is created on the thread that will submit to it (SINGLE_ISSUER).
  auto loop = io::Loop::create();
  if (!loop) {
    finished_ = true;
    ready->set_value(Error{loop.error()});
    return;
  }
  loop_ = std::move(loop.value());
  for (const auto& ep : endpoints) {
    auto fd = io::listen_on(ep);
    if (!fd) {
      finished_ = true;
      ready->set_value(Error{"worker " + std::to_string(index_) + ": " + fd.error()});
      return;
    }
    listeners_.emplace_back(fd.value());
    loop_->accept_multishot(fd.value(), [this](int client) { on_accept(client); });
  }
  ready->set_value(Status{});  // `ready` dies with start(); not touched after this
  loop_->run();
  finished_.store(true, std::memory_order_release);
}

void SinkWorker::on_accept(int fd) {
  // fd < 0 (EMFILE and friends): the kernel keeps the connection queued and
  // the accept is re-armed; nothing to do here.
  if (fd < 0) return;
  if (stopping_) {
    ::close(fd);
    return;
  }
  io::set_nodelay(fd);
  io::spawn(run_sink_session(*this, io::UniqueFd(fd)));
}

void SinkWorker::detach(SinkSession* s) {
  sessions_.erase(s);
  if (stopping_ && sessions_.empty()) loop_->stop();
}

void SinkWorker::request_stop() {
  if (!loop_ || finished()) return;
  loop_->post([this] { begin_stop(); });
}

void SinkWorker::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& l : listeners_) loop_->cancel_fd(l.get());
  listeners_.clear();  // closing the listeners lets the kernel refuse new connections
  for (auto* s : sessions_) s->request_stop();
  if (sessions_.empty()) loop_->stop();
}

void SinkWorker::abandon() {
  if (!loop_ || finished()) return;
  loop_->post([this] { loop_->stop(); });
}

void SinkWorker::join() {
  if (thread_.joinable()) thread_.join();
}

std::optional<SinkStats> SinkWorker::snapshot(std::chrono::milliseconds wait) {
  if (!loop_ || finished()) return stats_;
  // Shared ownership: if the loop answers after we gave up, the promise is still alive.
  auto copy = std::make_shared<std::promise<SinkStats>>();
  auto result = copy->get_future();
  loop_->post([this, copy] { copy->set_value(stats_); });
  if (result.wait_for(wait) != std::future_status::ready) return std::nullopt;
  return result.get();
}

}  // namespace tern::sink
