// What a ServerThread asks of the sessions it tracks: to end at shutdown.
// ternd's worker serves SMTP and POP3 sessions on one loop, so it tracks
// both through this interface (and waits for both before its loop ends).
#pragma once

namespace tern::io {

class StoppableSession {
 public:
  // Loop thread. An idle session says goodbye and closes now; a busy one
  // finishes what it is doing first.
  virtual void request_stop() = 0;

 protected:
  StoppableSession() = default;
  ~StoppableSession() = default;  // sessions are not owned through this interface
  StoppableSession(const StoppableSession&) = default;
  StoppableSession& operator=(const StoppableSession&) = default;
};

}  // namespace tern::io
