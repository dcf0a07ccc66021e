// SCRAM-SHA-256 (RFC 5802, RFC 7677) for both of Sluice's roles, over OpenSSL's primitives.
//
// ScramServer authenticates a client against a stored verifier; ScramClient authenticates Sluice
// to a PostgreSQL backend, either with a plain password or, for passthrough, with the ClientKey
// recovered from the client's own exchange plus the verifier's ServerKey (PgBouncer >= 1.14 does
// the same), so no plain password needs to be stored. No channel binding (tls-server-end-point
// comes with TLS): the server advertises SCRAM-SHA-256 only and rejects a 'p=' GS2 header.
// Objects are single-use, one per exchange, owned by one session; not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::auth {

using Key = std::array<unsigned char, 32>;  // SHA-256 sized

struct ScramSecret {
  std::uint32_t iterations = 4096;
  std::string salt;  // raw bytes (not base64)
  Key stored_key{};
  Key server_key{};
};

// Parses "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>"
// (PostgreSQL's pg_authid.rolpassword format).
std::optional<ScramSecret> parse_scram_verifier(std::string_view text);
// Formats a secret in the same form.
std::string format_scram_verifier(const ScramSecret& secret);
// Derives a secret from a plain password (PBKDF2-HMAC-SHA-256). The password is used as given
// (SASLprep is the identity for ASCII; PostgreSQL also falls back to raw bytes when it fails).
ScramSecret make_scram_secret(std::string_view password, std::string_view salt,
                              std::uint32_t iterations);

// Cryptographically random bytes (OpenSSL RAND_bytes). Throws std::runtime_error on failure.
std::string random_bytes(std::size_t n);
std::string base64_encode(std::string_view raw);
std::optional<std::string> base64_decode(std::string_view text);

enum class ScramError {
  None,
  Malformed,           // message does not follow RFC 5802 syntax
  ChannelBinding,      // client demanded channel binding ('p=') we do not offer
  NonceMismatch,
  BadProof,            // wrong password
  BadServerSignature,  // backend's v= did not verify
  ServerError,         // backend sent e=
};
std::string_view to_string(ScramError e);

class ScramServer {
 public:
  // `nonce` is the server's random part (printable, no ','); tests pass a fixed one.
  ScramServer(ScramSecret secret, std::string nonce);
  // Handles client-first-message; on success returns server-first-message.
  std::optional<std::string> handle_client_first(std::string_view message);
  // Handles client-final-message; on success (proof verified) returns server-final-message.
  std::optional<std::string> handle_client_final(std::string_view message);
  ScramError error() const { return error_; }
  // After a successful exchange: the ClientKey recovered from the client's proof.
  const std::optional<Key>& client_key() const { return client_key_; }
  const ScramSecret& secret() const { return secret_; }

 private:
  ScramSecret secret_;
  std::string server_nonce_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string combined_nonce_;
  std::string gs2_header_;
  std::optional<Key> client_key_;
  ScramError error_ = ScramError::None;
};

class ScramClient {
 public:
  // With a plain password.
  ScramClient(std::string password, std::string nonce);
  // Passthrough: keys recovered from a client's exchange (ClientKey) and its verifier (ServerKey).
  ScramClient(Key client_key, Key server_key, std::string nonce);
  // client-first-message ("n,,n=,r=<nonce>"; PostgreSQL ignores the user name here).
  std::string client_first();
  // Handles server-first-message; returns client-final-message.
  std::optional<std::string> handle_server_first(std::string_view message);
  // Verifies server-final-message.
  bool handle_server_final(std::string_view message);
  ScramError error() const { return error_; }

 private:
  std::optional<std::string> password_;
  Key client_key_{};
  Key server_key_{};
  std::string nonce_;
  std::string client_first_bare_;
  std::string auth_message_;
  ScramError error_ = ScramError::None;
};

}  // namespace sluice::auth
