// Address patterns: "user{n}@sink.test" with {n} a counter (every recipient
// of the run distinct), "{domain}" one of a fixed list used round-robin.
// Pure.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "queue/result.h"

namespace tern::bench {

// Checks a pattern: braces only as "{n}" or "{domain}"; "{domain}" needs a
// non-empty domain list.
Status check_pattern(std::string_view pattern, size_t domain_count);

// Appends the pattern with {n} = n and {domain} = domains[n % size] to *out.
void expand_pattern(std::string_view pattern, uint64_t n, const std::vector<std::string>& domains, std::string* out);

// "a.test,b.test" -> {"a.test", "b.test"}; empty items are an error.
Result<std::vector<std::string>> parse_domain_list(std::string_view text);

}  // namespace tern::bench
