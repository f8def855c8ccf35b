// One POP3 session (RFC 1939) as a coroutine on a worker's loop.
//
// RFC 1939 (USER/PASS, STAT, LIST, RETR, DELE, RSET, TOP, UIDL, NOOP, QUIT),
// RFC 2449 (CAPA, response codes), RFC 2595 (STLS), RFC 5034 (AUTH PLAIN).
// States: AUTHORIZATION -> TRANSACTION -> UPDATE (QUIT after login only:
// a connection that ends otherwise deletes nothing).
//
// Blocking work (password hashing, Maildir reads and unlinks, the synced
// POP-before-SMTP write) runs on ServerContext::auth_offload.
//
// Registered with the worker like smtp::Session: at shutdown a session
// waiting for a command answers -ERR [SYS/TEMP] and closes, one in a
// command finishes it first, and the worker waits for them (up to the
// drain time). Nothing is deleted unless QUIT was completed.
#pragma once
#include "mta/io/net.h"
#include "mta/io/task.h"

namespace tern {
class Worker;
}

namespace tern::pop3 {

// Spawned by the worker for each connection accepted on a pop3 (implicit_tls
// false) or pop3s (true) listener.
io::Task<void> run_pop3_session(Worker& worker, io::UniqueFd fd, bool implicit_tls);

}  // namespace tern::pop3
