// From ternd's configuration to the delivery engine's settings: the
// routing table, the retry ladder, the client's timeouts and TLS contexts,
// the resolver's servers and host table, and the addresses that are us.
#pragma once
#include <string>
#include <vector>

#include "mta/config.h"
#include "mta/delivery/delivery_engine.h"
#include "mta/io/net.h"
#include "queue/result.h"

namespace tern::delivery {

// Fails when a file it must read (dns.hosts_file, delivery.ca_file) cannot
// be used; the configuration itself was validated when it was parsed.
// `workers`: the SMTP workers started (delivery.loops 0 means as many).
Result<EngineSettings> engine_settings(const Config& config, const std::string& hostname,
                                       const std::vector<io::Endpoint>& listening, unsigned workers);

}  // namespace tern::delivery
