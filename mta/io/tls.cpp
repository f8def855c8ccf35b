#include "mta/io/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace tern::io {

namespace {

std::string openssl_error(std::string_view what) {
  std::string msg(what);
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += ": ";
    msg += buf;
  }
  return msg;
}

// Restricts `c` to `protocols`.
Status apply_protocols(SSL_CTX* c, const TlsProtocols& protocols) {
  SSL_CTX_set_min_proto_version(c, protocols.min_version == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(c, protocols.ciphers.c_str()) != 1)
    return Error{openssl_error("TLS 1.2 ciphers \"" + protocols.ciphers + "\"")};
  if (SSL_CTX_set_ciphersuites(c, protocols.ciphersuites.c_str()) != 1)
    return Error{openssl_error("TLS 1.3 ciphersuites \"" + protocols.ciphersuites + "\"")};
  // No TLS 1.3 suites: TLS 1.3 off. Said outright, as otherwise a server
  // refuses every handshake ("no ciphers available": OpenSSL wants a suite
  // for the highest version enabled).
  if (protocols.ciphersuites.empty()) SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
  return {};
}

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::create_server(const std::string& certificate,
                                                              const std::string& private_key,
                                                              const TlsProtocols& protocols) {
  auto ctx = std::make_shared<TlsContext>();
  ctx->ctx_.reset(SSL_CTX_new(TLS_server_method()));
  if (!ctx->ctx_) return Error{openssl_error("SSL_CTX_new")};
  SSL_CTX* c = ctx->ctx_.get();
  if (Status applied = apply_protocols(c, protocols); !applied) return Error{applied.error()};
  // The DHE suites need Diffie-Hellman parameters: OpenSSL's built-in
  // groups, sized to the certificate's key.
  SSL_CTX_set_dh_auto(c, 1);
  // No renegotiation (a DoS vector) and no compression (CRIME).
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(c, certificate.c_str()) != 1)
    return Error{openssl_error("certificate " + certificate)};
  if (SSL_CTX_use_PrivateKey_file(c, private_key.c_str(), SSL_FILETYPE_PEM) != 1)
    return Error{openssl_error("private key " + private_key)};
  if (SSL_CTX_check_private_key(c) != 1) return Error{openssl_error("certificate and private key do not match")};
  return ctx;
}

Result<std::shared_ptr<TlsContext>> TlsContext::create_self_signed(const std::string& hostname) {
  auto ctx = std::make_shared<TlsContext>();
  ctx->ctx_.reset(SSL_CTX_new(TLS_server_method()));
  if (!ctx->ctx_) return Error{openssl_error("SSL_CTX_new")};
  SSL_CTX* c = ctx->ctx_.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) return Error{openssl_error("generating the key")};
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  if (!cert) return Error{openssl_error("X509_new")};
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 365L * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(hostname.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return Error{openssl_error("signing the certificate")};
  if (SSL_CTX_use_certificate(c, cert.get()) != 1 || SSL_CTX_use_PrivateKey(c, key.get()) != 1)
    return Error{openssl_error("installing the certificate")};
  return ctx;
}

Result<std::shared_ptr<TlsContext>> TlsContext::create_client() {
  auto ctx = std::make_shared<TlsContext>();
  ctx->ctx_.reset(SSL_CTX_new(TLS_client_method()));
  if (!ctx->ctx_) return Error{openssl_error("SSL_CTX_new")};
  ctx->client_ = true;
  SSL_CTX_set_min_proto_version(ctx->ctx_.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx->ctx_.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_verify(ctx->ctx_.get(), SSL_VERIFY_NONE, nullptr);
  return ctx;
}

Result<std::shared_ptr<TlsContext>> TlsContext::create_verifying_client(const std::string& ca_file) {
  auto created = create_client();
  if (!created) return created;
  std::shared_ptr<TlsContext> ctx = created.value();
  ctx->verifies_peer_ = true;
  SSL_CTX* c = ctx->ctx_.get();
  if (Status applied = apply_protocols(c, TlsProtocols{}); !applied) return Error{applied.error()};
  const int loaded = ca_file.empty() ? SSL_CTX_set_default_verify_paths(c)
                                     : SSL_CTX_load_verify_locations(c, ca_file.c_str(), nullptr);
  if (loaded != 1) return Error{openssl_error(ca_file.empty() ? "the default CA paths" : "CA file " + ca_file)};
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  return ctx;
}

std::shared_ptr<const TlsContext> TlsContext::with_peer_name(std::string host) const {
  auto ctx = std::make_shared<TlsContext>();
  SSL_CTX_up_ref(ctx_.get());
  ctx->ctx_.reset(ctx_.get());
  ctx->client_ = client_;
  ctx->verifies_peer_ = verifies_peer_;
  ctx->peer_name_ = std::move(host);
  return ctx;
}

TlsSession::TlsSession(std::shared_ptr<const TlsContext> ctx) : ctx_(std::move(ctx)) {
  ssl_.reset(SSL_new(ctx_->get()));
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  // An empty memory BIO reports "retry" rather than EOF, which is what a
  // non-blocking transport means.
  BIO_set_mem_eof_return(in_, -1);
  BIO_set_mem_eof_return(out_, -1);
  SSL_set_bio(ssl_.get(), in_, out_);
  if (ctx_->is_client() && !ctx_->peer_name().empty()) {
    const std::string& name = ctx_->peer_name();
    in6_addr literal{};
    const bool is_address = inet_pton(AF_INET, name.c_str(), &literal) == 1 ||
                            inet_pton(AF_INET6, name.c_str(), &literal) == 1;
    // RFC 6066 section 3: SNI carries host names only, never address literals.
    if (!is_address) SSL_set_tlsext_host_name(ssl_.get(), name.c_str());
    if (ctx_->verifies_peer()) {
      SSL_set_hostflags(ssl_.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl_.get(), name.c_str());  // OpenSSL 3 checks an address literal as an IP SAN
    }
  }
  if (ctx_->is_client())
    SSL_set_connect_state(ssl_.get());
  else
    SSL_set_accept_state(ssl_.get());
}

void TlsSession::feed(std::string_view ciphertext) {
  BIO_write(in_, ciphertext.data(), static_cast<int>(ciphertext.size()));
}

bool TlsSession::has_output() const { return BIO_ctrl_pending(out_) > 0; }

void TlsSession::drain(std::string* out) {
  size_t pending = BIO_ctrl_pending(out_);
  if (pending == 0) return;
  size_t old = out->size();
  out->resize(old + pending);
  int n = BIO_read(out_, out->data() + old, static_cast<int>(pending));
  out->resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
}

TlsSession::Step TlsSession::handshake() {
  int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) return Step::done;
  int err = SSL_get_error(ssl_.get(), rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Step::want_input;
  error_ = openssl_error("TLS handshake");
  // The verification's own reason ("self-signed certificate", "hostname
  // mismatch") says more than the handshake's alert.
  long verify = ctx_->verifies_peer() ? SSL_get_verify_result(ssl_.get()) : X509_V_OK;
  if (verify != X509_V_OK) {
    error_ += ": ";
    error_ += X509_verify_cert_error_string(verify);
  }
  return Step::failed;
}

TlsSession::Step TlsSession::read(std::string* out) {
  char buf[16384];
  bool got = false;
  for (;;) {
    int n = SSL_read(ssl_.get(), buf, sizeof buf);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      got = true;
      continue;
    }
    int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return got ? Step::done : Step::want_input;
    if (got) return Step::done;  // report the data now, the close on the next read
    error_ = err == SSL_ERROR_ZERO_RETURN ? "peer closed TLS" : openssl_error("TLS read");
    return Step::failed;
  }
}

bool TlsSession::write(std::string_view plain) {
  while (!plain.empty()) {
    int n = SSL_write(ssl_.get(), plain.data(), static_cast<int>(plain.size()));
    if (n <= 0) {
      error_ = openssl_error("TLS write");
      return false;
    }
    plain.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string TlsSession::version() const { return SSL_get_version(ssl_.get()); }

std::string TlsSession::cipher() const {
  const char* name = SSL_get_cipher_name(ssl_.get());
  return name ? name : "";
}

}  // namespace tern::io
