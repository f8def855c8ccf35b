#include "tools/tern_sink/sink_worker.h"

#include <future>

#include "tools/tern_sink/sink_session.h"

template class tern::io::ServerThread<tern::sink::SinkSession>;

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

SinkWorker::SinkWorker(const SinkShared& shared, unsigned index) : ServerThread(index, "sink-worker-"), shared_(shared) {}

SinkWorker::~SinkWorker() { join(); }

void SinkWorker::serve(io::UniqueFd fd, size_t /*listener*/) { io::spawn(run_sink_session(*this, std::move(fd))); }

std::optional<SinkStats> SinkWorker::snapshot(std::chrono::milliseconds wait) {
  if (finished()) return stats_;
  // Shared ownership: if the loop answers after we gave up, the promise is still alive.
  auto copy = std::make_shared<std::promise<SinkStats>>();
  auto result = copy->get_future();
  post([this, copy] { copy->set_value(stats_); });
  if (result.wait_for(wait) != std::future_status::ready) return std::nullopt;
  return result.get();
}

}  // namespace tern::sink
