// TLS over memory BIOs: OpenSSL never touches the socket, so every byte
// still moves through the io_uring loop with its deadlines.
#pragma once
#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "mta/io/tls_profile.h"
#include "queue/result.h"

namespace tern::io {

// The versions and suites a context accepts (tls.min_version,
// tls.ciphers, tls.ciphersuites).
struct TlsProtocols {
  std::string min_version = "TLSv1.2";                  // or "TLSv1.3"
  std::string ciphers{kIntermediateCiphers};            // TLS 1.2, OpenSSL cipher list syntax
  std::string ciphersuites{kIntermediateCiphersuites};  // TLS 1.3; "" = no TLS 1.3
};

// An SSL_CTX, server or client side. Immutable once built; SIGHUP builds a
// new one and new sessions pick it up.
class TlsContext {
 public:
  // A server context with the certificate chain and key loaded from files,
  // accepting `protocols` only.
  static Result<std::shared_ptr<TlsContext>> create_server(const std::string& certificate,
                                                           const std::string& private_key,
                                                           const TlsProtocols& protocols);
  // A server context with a fresh self-signed certificate for `hostname`
  // (test servers such as tern-sink, which must not need files).
  static Result<std::shared_ptr<TlsContext>> create_self_signed(const std::string& hostname);
  // A client context that does not verify the peer: SMTP's opportunistic
  // TLS (RFC 3207 section 4.1), and load generators. It takes any suite
  // OpenSSL's default list allows: to a peer that is not authenticated,
  // weak encryption still beats none (RFC 7435).
  static Result<std::shared_ptr<TlsContext>> create_client();
  // A client context that verifies the peer's chain against the PEM
  // certificates in `ca_file`, or the system's default CA paths when it is
  // empty (the delivery policy "verify"). Like a server with the default
  // TlsProtocols, it accepts only the intermediate profile's suites. The
  // name is checked per peer: see with_peer_name().
  static Result<std::shared_ptr<TlsContext>> create_verifying_client(const std::string& ca_file);
  // This context (the same SSL_CTX, shared) for sessions with one peer:
  // they send `host` as SNI and, when the context verifies, accept only a
  // certificate issued to `host` (RFC 6125; SSL_set1_host).
  std::shared_ptr<const TlsContext> with_peer_name(std::string host) const;
  SSL_CTX* get() const { return ctx_.get(); }
  bool is_client() const { return client_; }
  bool verifies_peer() const { return verifies_peer_; }
  const std::string& peer_name() const { return peer_name_; }

 private:
  bool client_ = false;
  bool verifies_peer_ = false;
  std::string peer_name_;
  struct CtxFree {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  std::unique_ptr<SSL_CTX, CtxFree> ctx_;
};

// One connection's TLS state.
class TlsSession {
 public:
  explicit TlsSession(std::shared_ptr<const TlsContext> ctx);
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Ciphertext from the network.
  void feed(std::string_view ciphertext);
  // Ciphertext to send, appended to *out.
  void drain(std::string* out);
  bool has_output() const;

  enum class Step { done, want_input, failed };
  Step handshake();
  // Appends decrypted bytes to *out. want_input: no record complete yet.
  // failed: a TLS error or the peer's close_notify.
  Step read(std::string* out);
  // Encrypts all of `plain` into the output BIO (memory BIOs never block).
  bool write(std::string_view plain);

  std::string version() const;  // "TLSv1.3"
  std::string cipher() const;   // "TLS_AES_256_GCM_SHA384"
  std::string last_error() const { return error_; }

 private:
  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };
  std::shared_ptr<const TlsContext> ctx_;
  std::unique_ptr<SSL, SslFree> ssl_;
  BIO* in_ = nullptr;   // owned by ssl_
  BIO* out_ = nullptr;  // owned by ssl_
  std::string error_;
};

}  // namespace tern::io
