#include "mta/worker.h"

#include "mta/log.h"
#include "mta/smtp/session.h"

template class tern::io::ServerThread<tern::smtp::Session>;

namespace tern {

Worker::Worker(ServerContext& ctx, unsigned index, std::shared_ptr<const Settings> settings)
    : ServerThread(index), ctx_(ctx), settings_(std::move(settings)) {}

Worker::~Worker() { join(); }

void Worker::serve(io::UniqueFd fd) { io::spawn(smtp::run_session(*this, std::move(fd))); }

void Worker::accept_failed(int error) { log::event("accept_error", {{"worker", index()}, {"errno", error}}); }

void Worker::apply(std::shared_ptr<const Settings> settings) {
  post([this, settings = std::move(settings)]() mutable { settings_ = std::move(settings); });
}

}  // namespace tern
