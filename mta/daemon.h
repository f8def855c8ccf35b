// ternd's top level: loads the configuration, opens and recovers the spool,
// starts the workers and the control socket, then waits for signals
// (SIGHUP reloads, SIGTERM/SIGINT stop gracefully).
#pragma once
#include <string>

namespace tern {

// `config_path` empty: the embedded default configuration. Returns the exit code.
int run_daemon(const std::string& config_path);

}  // namespace tern
