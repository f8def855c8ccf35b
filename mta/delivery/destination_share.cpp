#include "mta/delivery/destination_share.h"

#include <algorithm>

namespace tern::delivery {

DestinationShares::DestinationShares(size_t share, int64_t max_wait_us)
    : share_(share), max_wait_us_(std::max<int64_t>(max_wait_us, 1'000)) {}

size_t DestinationShares::held_by(const std::string& hop) const {
  auto found = hops_.find(hop);
  return found == hops_.end() ? 0 : found->second.active;
}

// One put-back message of `hop` every `pace` (half its time per message:
// the measured average, or what the time since it last took one says when
// that is longer: with n messages in hand and none taken for t, it takes at
// least t/n each), the first once half its share has had time to drain. None waits
// longer than max_wait; those cut short leave the cursor alone, so a long
// backlog cannot push it out of reach of the messages put back after the
// destination drained.
int64_t DestinationShares::put_back_due(Hop& hop, int64_t now_us) const {
  const int64_t in_hand = static_cast<int64_t>(std::max<size_t>(hop.active, 1));
  const int64_t per_message = std::max(hop.interval_us, (now_us - hop.last_taken_us) / in_hand);
  const int64_t pace = std::clamp<int64_t>(per_message / 2, kMinPace_us, max_wait_us_);
  const int64_t share = static_cast<int64_t>(share_);
  const int64_t earliest = now_us + (pace > max_wait_us_ / share ? max_wait_us_ : pace * share);
  const int64_t due = std::max(earliest, hop.next_due_us);
  if (due > now_us + max_wait_us_) return now_us + max_wait_us_;
  hop.next_due_us = due + pace;
  return due;
}

DestinationShares::Admission DestinationShares::admit(const std::vector<std::string>& hops, int64_t now_us) {
  Admission out;
  if (share_ == 0) return out;
  for (size_t i = 0; i < hops.size(); ++i) {
    auto found = hops_.find(hops[i]);
    if (found == hops_.end() || found->second.active < share_) continue;
    Hop& hop = found->second;
    out.admitted = false;
    out.due_us = std::max(out.due_us, put_back_due(hop, now_us));
    if (hop.put_back++ == 0) {
      ++episodes_open_;
      out.episodes_begun.push_back(i);
    }
  }
  if (!out.admitted) {
    ++put_back_total_;
    return out;
  }
  for (const std::string& key : hops) {
    Hop& hop = hops_[key];
    if (hop.active++ == 0) hop.last_taken_us = now_us;
  }
  return out;
}

DestinationShares::Release DestinationShares::release(const std::vector<std::string>& hops, int64_t now_us) {
  Release out;
  if (share_ == 0) return out;
  for (const std::string& key : hops) {
    auto found = hops_.find(key);
    if (found == hops_.end() || found->second.active == 0) continue;
    Hop& hop = found->second;
    // An average over the last several releases (weight 1/8), each gap
    // capped: one long pause must not stretch the next put-backs for long.
    // The first: the messages in hand all waited since the first was
    // admitted, so the time per message is that wait shared among them.
    const int64_t gap = std::clamp<int64_t>(now_us - hop.last_taken_us, 1, max_wait_us_);
    hop.interval_us = hop.interval_us == 0 ? std::max<int64_t>(1, gap / static_cast<int64_t>(hop.active))
                                           : std::max<int64_t>(1, hop.interval_us + (gap - hop.interval_us) / 8);
    hop.last_taken_us = now_us;
    --hop.active;
    if (hop.put_back > 0 && hop.active == share_ / 2) out.room_for_put_back = true;
    if (hop.active > 0) continue;
    if (hop.put_back > 0) {
      out.episodes_ended.push_back({key, hop.put_back});
      --episodes_open_;
    }
    hops_.erase(found);
  }
  return out;
}

}  // namespace tern::delivery
