// Mozilla's "intermediate" TLS configuration (version 5.7,
// https://wiki.mozilla.org/Security/Server_Side_TLS): all of TLS 1.3, and
// for TLS 1.2 only ECDHE or DHE key exchange (forward secrecy) with AEAD
// ciphers (no CBC, no SHA-1 MAC). The default of tls.ciphers and
// tls.ciphersuites, and what the delivery policy "verify" accepts. Kept
// free of OpenSSL headers so that the configuration can name it.
#pragma once
#include <string_view>

namespace tern::io {

// TLS 1.2 suites, in OpenSSL's cipher list syntax (SSL_CTX_set_cipher_list).
inline constexpr std::string_view kIntermediateCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
// TLS 1.3 suites (SSL_CTX_set_ciphersuites).
inline constexpr std::string_view kIntermediateCiphersuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

}  // namespace tern::io
