#include "mta/delivery/attempt_outcome.h"

namespace tern::delivery {

namespace {

std::string describe(const RecipientOutcome& outcome, std::string_view host) {
  std::string text;
  if (outcome.code > 0) text += std::to_string(outcome.code) + " ";
  if (!outcome.enhanced.empty()) text += outcome.enhanced + " ";
  text += outcome.text;
  if (!host.empty()) {
    text += " (";
    text += host;
    text += ")";
  }
  return text;
}

// "mx1.example.test[192.0.2.1:25]" → "mx1.example.test"
std::string_view host_name(std::string_view host) { return host.substr(0, host.find('[')); }

}  // namespace

void record_outcome(queue::Envelope& envelope, const RecipientOutcome& outcome, std::string_view host,
                    int64_t attempt_us) {
  if (outcome.recipient >= envelope.recipients.size()) return;
  queue::Recipient& r = envelope.recipients[outcome.recipient];
  if (r.state != queue::RecipientState::pending) return;  // at-least-once: a final state stays final
  r.last_error = describe(outcome, host);
  r.status = outcome.enhanced;
  r.last_attempt_us = attempt_us;
  if (outcome.code > 0) {
    r.remote_mta = host_name(host);
    r.diagnostic = describe(outcome, "");
  } else {
    r.remote_mta.clear();
    r.diagnostic.clear();
  }
  switch (outcome.kind) {
    case RecipientOutcome::Kind::delivered: r.state = queue::RecipientState::delivered; break;
    case RecipientOutcome::Kind::permanent: r.state = queue::RecipientState::failed; break;
    case RecipientOutcome::Kind::temporary: envelope.last_error = r.last_error; break;
  }
}

void fail_pending(queue::Envelope& envelope, std::string_view status, std::string_view reason) {
  for (auto& r : envelope.recipients) {
    if (r.state != queue::RecipientState::pending) continue;
    r.state = queue::RecipientState::failed;
    r.status = status;
    r.last_error = reason;
  }
}

bool has_pending(const queue::Envelope& envelope) {
  for (const auto& r : envelope.recipients)
    if (r.state == queue::RecipientState::pending) return true;
  return false;
}

namespace {
constexpr std::string_view kHeldPrefix = "4.3.2 destination held by the administrator: ";
}

std::string held_destination_reason(std::string_view domain) {
  std::string reason(kHeldPrefix);
  reason += domain;
  return reason;
}

bool held_for_destination(const queue::Envelope& envelope) {
  return envelope.queue == queue::QueueName::hold && envelope.last_error.starts_with(kHeldPrefix);
}

Disposition settle(queue::Envelope& envelope, const RetrySettings& retry, int64_t now_us, const Waiting& waiting,
                   std::mt19937_64& rng) {
  size_t pending = 0;
  for (const auto& r : envelope.recipients) pending += r.state == queue::RecipientState::pending;
  if (pending == 0) return {Disposition::Kind::finished};
  if (pending == waiting.count) {
    envelope.queue = queue::QueueName::hold;
    envelope.next_attempt_us = now_us;
    envelope.last_error = waiting.reason;
    return {Disposition::Kind::hold};
  }
  ++envelope.attempts;
  const RetryStep step = next_retry(retry, envelope.attempts, envelope.arrival_us, now_us, rng);
  if (step.kind == RetryStep::Kind::expired) {
    const std::string last = envelope.last_error.empty() ? std::string("no attempt succeeded") : envelope.last_error;
    fail_pending(envelope, "4.4.7", "4.4.7 message expired after " + std::to_string(envelope.attempts) +
                               " attempts; last error: " + last);
    return {Disposition::Kind::expired};
  }
  envelope.queue = step.queue;
  envelope.next_attempt_us = step.due_us;
  return {Disposition::Kind::retry};
}

}  // namespace tern::delivery
