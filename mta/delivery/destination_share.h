// How much of the active set one next hop may hold
// (delivery.active_per_destination), and when a message that finds its
// destination at its share is due again. Pure: no I/O, the caller passes
// the time; the delivery engine's home loop owns one and does the logging
// and the spool moves these decisions call for.
//
// Why: the scanner takes due mail in the order it became due, so without a
// share a destination that is alive but slow, with a large backlog, fills
// the whole active set and every other destination's mail waits behind it.
// A message that would take its destination past its share goes back to
// its queue (no attempt counted, no notice), due again when the
// destination is expected to have room. The put-back messages of one
// destination come due at twice the pace it has been taking messages (one
// per half its measured time per message), the first once half its share
// has had time to drain: a destination faster than measured never waits
// for its own mail, and what comes due while it is still full is put back
// again, further on. The pace counts the time since the destination last
// took a message, so one that takes nothing (a tarpit) spreads its mail
// ever further apart: the scanner neither re-reads nor moves the same
// messages in a tight loop.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace tern::delivery {

class DestinationShares {
 public:
  // `share`: messages of one next hop in the active set at once; 0 = no
  // bound of its own (the active set's limit only). `max_wait_us`: the
  // longest a message is put back for, however slow its destination.
  DestinationShares(size_t share, int64_t max_wait_us);

  struct Admission {
    bool admitted = true;
    int64_t due_us = 0;  // not admitted: due again then
    // Indices into `hops` of destinations whose share filled just now
    // (their first put-back since they last held nothing): log them once.
    std::vector<size_t> episodes_begun;
  };
  // A message whose pending recipients go to next hops `hops` (distinct
  // names; none when all are local or held), found due at `now_us`. Admitted
  // and counted against every hop when each is below its share; else put
  // back, due when the fullest of them is expected to have room.
  Admission admit(const std::vector<std::string>& hops, int64_t now_us);

  struct Release {
    struct Ended {
      std::string hop;
      uint64_t put_back = 0;  // messages put back during the episode
    };
    std::vector<Ended> episodes_ended;  // destinations that held their share and now hold nothing
    // A destination with mail put back has half its share free: worth a scan.
    bool room_for_put_back = false;
  };
  // A message admitted with `hops` left the active set at `now_us`.
  Release release(const std::vector<std::string>& hops, int64_t now_us);

  uint64_t put_back_total() const { return put_back_total_; }
  // Destinations that have had mail put back and still hold some.
  size_t destinations_at_share() const { return episodes_open_; }
  // Messages of `hop` in the active set.
  size_t held_by(const std::string& hop) const;

  // The shortest gap between two put-back messages of one destination.
  static constexpr int64_t kMinPace_us = 10;

 private:
  struct Hop {
    size_t active = 0;
    int64_t last_taken_us = 0;  // its last release; before the first, its first admission
    int64_t interval_us = 0;    // moving average of the time between releases; 0: none yet
    int64_t next_due_us = 0;    // due time of its next put-back message, at the earliest
    uint64_t put_back = 0;      // in this episode; > 0: the episode is open
  };
  int64_t put_back_due(Hop& hop, int64_t now_us) const;

  size_t share_;
  int64_t max_wait_us_;
  std::unordered_map<std::string, Hop> hops_;  // only destinations with messages in the active set
  uint64_t put_back_total_ = 0;
  size_t episodes_open_ = 0;
};

}  // namespace tern::delivery
