// Awaiting a spool request from a loop thread: the request runs on the
// spool's writer thread and its completion is posted back to the loop, so
// the coroutine resumes on its own thread.
//
//   Status st = co_await SpoolAwait{loop, [&](queue::Spool::Done done) { spool.commit(env, chunk, done); }};
#pragma once
#include "mta/io/callback_await.h"
#include "queue/result.h"

namespace tern {

using SpoolAwait = io::CallbackAwait<Status>;

}  // namespace tern
