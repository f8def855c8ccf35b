#include "mta/worker.h"

#include <unistd.h>

#include <future>

#include "mta/log.h"
#include "mta/smtp/session.h"

namespace tern {

Worker::Worker(ServerContext& ctx, unsigned index, std::shared_ptr<const Settings> settings)
    : ctx_(ctx), index_(index), settings_(std::move(settings)) {}

Worker::~Worker() { join(); }

Status Worker::start(const std::vector<io::Endpoint>& endpoints) {
  std::promise<Status> ready;
  auto result = ready.get_future();
  thread_ = std::thread([this, endpoints, &ready] { run(endpoints, &ready); });
  return result.get();
}

void Worker::run(std::vector<io::Endpoint> endpoints, std::promise<Status>* ready) {
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
      ready->set_value(Error{fd.error()});
      return;
    }
    listeners_.emplace_back(fd.value());
    loop_->accept_multishot(fd.value(), [this](int client) { on_accept(client); });
  }
  ready->set_value(Status{});  // `ready` dies with start(); not touched after this
  loop_->run();
  finished_ = true;
}

void Worker::on_accept(int fd) {
  if (fd < 0) {
    // EMFILE/ENFILE and friends: the kernel keeps the connection queued;
    // log it, the accept is re-armed.
    log::event("accept_error", {{"worker", index_}, {"errno", -fd}});
    return;
  }
  if (stopping_) {
    ::close(fd);
    return;
  }
  io::set_nodelay(fd);
  io::spawn(smtp::run_session(*this, io::UniqueFd(fd)));
}

void Worker::detach(smtp::Session* s) {
  sessions_.erase(s);
  if (stopping_ && sessions_.empty()) loop_->stop();
}

void Worker::apply(std::shared_ptr<const Settings> settings) {
  if (!loop_) return;
  loop_->post([this, settings = std::move(settings)]() mutable { settings_ = std::move(settings); });
}

void Worker::request_stop() {
  if (!loop_ || finished_) return;
  loop_->post([this] { begin_stop(); });
}

void Worker::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& l : listeners_) loop_->cancel_fd(l.get());
  listeners_.clear();  // closing the listeners lets the kernel refuse new connections
  for (auto* s : sessions_) s->request_stop();
  if (sessions_.empty()) loop_->stop();
}

void Worker::abandon() {
  if (!loop_ || finished_) return;
  loop_->post([this] { loop_->stop(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace tern
