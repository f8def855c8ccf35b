#include "mta/dsn/notice_plan.h"

#include <algorithm>

#include "mta/text.h"

namespace tern::dsn {

namespace {

std::string_view default_status(Action action) {
  switch (action) {
    case Action::failed:
      return "5.0.0";
    case Action::delayed:
      return "4.0.0";
    case Action::delivered:
    case Action::relayed:
      break;
  }
  return "2.0.0";
}

RecipientReport recipient_report(const queue::Recipient& r, Action action, int64_t will_retry_until_us) {
  RecipientReport out;
  out.final_recipient = r.address;
  out.original_recipient = r.orcpt;
  out.action = action;
  // A delivered recipient's status is the 2.x.x of the reply that took it.
  out.status = r.status.empty() ? std::string(default_status(action)) : r.status;
  out.remote_mta = r.remote_mta;
  out.diagnostic = action == Action::failed || action == Action::delayed ? r.diagnostic : std::string();
  // Our own words when they say more than the remote reply: a failure
  // without a reply, expiry, the administrator.
  if (action == Action::failed || action == Action::delayed) {
    if (r.diagnostic.empty() || !r.last_error.starts_with(r.diagnostic)) out.reason = r.last_error;
  }
  out.last_attempt_us = r.last_attempt_us;
  if (action == Action::delayed) out.will_retry_until_us = will_retry_until_us;
  return out;
}

// One group of events of the same kind, by audience.
struct Group {
  Action action;
  std::vector<const queue::Recipient*> recipients;
  std::vector<Action> actions;
};

Notice make_notice(const queue::Envelope& original, const Group& group, Audience audience, const std::string& to,
                   Returned returned, std::string_view content, const NoticeSettings& settings, int64_t now_us,
                   int64_t will_retry_until_us, const std::function<std::string()>& new_id) {
  Notice notice;
  notice.audience = audience;
  notice.action = group.action;
  queue::Envelope& e = notice.envelope;
  e.id = new_id();

  Report report;
  report.reporting_mta = settings.hostname;
  report.to = to;
  report.original_sender = original.sender;
  report.queue_id = original.id;
  report.envid = original.envid;
  report.original_message_id = original.message_id;
  report.arrival_us = original.arrival_us;
  report.now_us = now_us;
  report.message_id = concat({"<", e.id, "@", settings.hostname, ">"});
  for (size_t i = 0; i < group.recipients.size(); ++i)
    report.recipients.push_back(recipient_report(*group.recipients[i], group.actions[i], will_retry_until_us));
  report.returned = returned;
  report.max_returned_size = settings.max_returned_size;
  report.content = content;
  report.smtputf8 = original.smtputf8;
  report.binary = original.body_type == "BINARYMIME";
  report.audience = audience;
  BuiltReport built = build_report(report);

  e.sender.clear();
  queue::Recipient rcpt;
  rcpt.address = to;
  e.recipients.push_back(std::move(rcpt));
  e.body_type = built.eight_bit ? "8BITMIME" : "";
  e.smtputf8 = built.smtputf8;
  e.arrival_us = now_us;
  e.protocol = "local";
  e.message_id = report.message_id;
  e.body_size = built.content.size();
  e.body_chunks = 1;
  e.queue = queue::QueueName::incoming;
  e.next_attempt_us = now_us;
  e.origin = audience == Audience::sender ? queue::Origin::report : queue::Origin::postmaster_notice;
  notice.content = std::move(built.content);
  return notice;
}

}  // namespace

bool wants(uint8_t notify, Action action) {
  if (notify & queue::notify_never) return false;
  if (notify == 0) return action == Action::failed || action == Action::delayed;
  switch (action) {
    case Action::failed:
      return (notify & queue::notify_failure) != 0;
    case Action::delayed:
      return (notify & queue::notify_delay) != 0;
    case Action::delivered:
    case Action::relayed:
      break;
  }
  return (notify & queue::notify_success) != 0;
}

bool delay_notice_due(const queue::Envelope& envelope, const queue::Recipient& r, const NoticeSettings& settings,
                      int64_t now_us) {
  if (r.state != queue::RecipientState::pending || envelope.sender.empty() || !wants(r.notify, Action::delayed))
    return false;
  switch (settings.delay) {
    case DelayNotices::off:
      return false;
    case DelayNotices::on_retry2:
      if (envelope.queue != queue::QueueName::retry2) return false;
      break;
    case DelayNotices::after_age:
      if (now_us - envelope.arrival_us < settings.delay_after_ms * 1000) return false;
      break;
  }
  return r.delay_notified_us == 0 || now_us - r.delay_notified_us >= settings.delay_interval_ms * 1000;
}

NoticePlan plan_notices(const queue::Envelope& original, std::span<const RecipientEvent> events,
                        std::string_view content, const NoticeSettings& settings, int64_t now_us,
                        int64_t will_retry_until_us, const std::function<std::string()>& new_id) {
  // One report per kind of event: failures, delays, successes.
  Group failed{Action::failed, {}, {}}, delayed{Action::delayed, {}, {}}, succeeded{Action::delivered, {}, {}};
  const bool null_sender = original.sender.empty();
  for (const RecipientEvent& ev : events) {
    if (ev.recipient >= original.recipients.size()) continue;
    const queue::Recipient& r = original.recipients[ev.recipient];
    // A message from <> has nobody to tell but the postmaster, and only of failures.
    if (!null_sender && !wants(r.notify, ev.action)) continue;
    Group& g = ev.action == Action::failed ? failed : ev.action == Action::delayed ? delayed : succeeded;
    g.recipients.push_back(&r);
    g.actions.push_back(ev.action);
  }

  // A success report where every recipient was relayed says so in its log line.
  if (!succeeded.actions.empty() &&
      std::all_of(succeeded.actions.begin(), succeeded.actions.end(), [](Action a) { return a == Action::relayed; }))
    succeeded.action = Action::relayed;

  NoticePlan plan;
  if (null_sender) {
    if (failed.recipients.empty()) return plan;
    if (original.origin == queue::Origin::postmaster_notice) {
      plan.dropped.push_back("a notice to the postmaster could not be delivered; it is not reported again");
    } else if (settings.double_bounce_to.empty()) {
      plan.dropped.push_back("a message from <> could not be delivered and double bounces are off");
    } else {
      plan.notices.push_back(make_notice(original, failed, Audience::double_bounce, settings.double_bounce_to,
                                         Returned::full, content, settings, now_us, will_retry_until_us, new_id));
    }
    return plan;
  }
  if (!failed.recipients.empty()) {
    const Returned returned = original.ret == "HDRS" ? Returned::headers : Returned::full;
    plan.notices.push_back(make_notice(original, failed, Audience::sender, original.sender, returned, content, settings,
                                       now_us, will_retry_until_us, new_id));
    if (!settings.failure_copy_to.empty()) {
      plan.notices.push_back(make_notice(original, failed, Audience::postmaster_copy, settings.failure_copy_to,
                                         settings.failure_copy_content ? returned : Returned::nothing, content,
                                         settings, now_us, will_retry_until_us, new_id));
    }
  }
  // Delays and successes return the header only (RFC 3461 §4.3: RET is
  // about failures).
  for (const Group* g : {&delayed, &succeeded}) {
    if (g->recipients.empty()) continue;
    plan.notices.push_back(make_notice(original, *g, Audience::sender, original.sender, Returned::headers, content,
                                       settings, now_us, will_retry_until_us, new_id));
  }
  return plan;
}

}  // namespace tern::dsn
