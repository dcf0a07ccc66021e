// SCRAM-SHA-256 over OpenSSL 3 one-shot primitives (EVP_Digest, HMAC, PKCS5_PBKDF2_HMAC).
//
// Every message parser here reads bytes from an unauthenticated peer: it bounds the input, never
// indexes past a checked size, and turns any deviation from RFC 5802's grammar into
// ScramError::Malformed rather than an exception.
#include "src/auth/scram.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <utility>
#include <vector>

namespace sluice::auth {
namespace {

// Far above any real client's messages (libpq's client-final is ~100 bytes), small enough that a
// hostile one costs nothing to reject before parsing.
constexpr std::size_t kMaxMessageLength = 4096;
// Guards the backend handing us a PBKDF2 cost that would stall a worker thread for minutes.
constexpr std::uint32_t kMaxClientIterations = 10'000'000;
constexpr std::string_view kMechanismPrefix = "SCRAM-SHA-256$";

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

Key sha256(const unsigned char* data, std::size_t size) {
  Key out{};
  unsigned int len = 0;
  if (EVP_Digest(data, size, out.data(), &len, EVP_sha256(), nullptr) != 1 || len != out.size()) {
    throw std::runtime_error("SHA-256 failed");
  }
  return out;
}

Key hmac_sha256(const unsigned char* key, std::size_t key_size, std::string_view data) {
  Key out{};
  unsigned int len = 0;
  if (key_size > static_cast<std::size_t>(INT_MAX) ||
      HMAC(EVP_sha256(), key, static_cast<int>(key_size), bytes(data), data.size(), out.data(),
           &len) == nullptr ||
      len != out.size()) {
    throw std::runtime_error("HMAC-SHA-256 failed");
  }
  return out;
}

Key hmac_sha256(const Key& key, std::string_view data) {
  return hmac_sha256(key.data(), key.size(), data);
}

// SaltedPassword := Hi(password, salt, i), RFC 5802's PBKDF2 with HMAC-SHA-256.
Key salted_password(std::string_view password, std::string_view salt, std::uint32_t iterations) {
  if (iterations == 0 || iterations > static_cast<std::uint32_t>(INT_MAX)) {
    throw std::invalid_argument("SCRAM iteration count out of range");
  }
  if (password.size() > static_cast<std::size_t>(INT_MAX) ||
      salt.size() > static_cast<std::size_t>(INT_MAX)) {
    throw std::invalid_argument("SCRAM password or salt too long");
  }
  Key salted{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), bytes(salt),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(salted.size()), salted.data()) != 1) {
    throw std::runtime_error("PBKDF2-HMAC-SHA-256 failed");
  }
  return salted;
}

std::string_view as_view(const Key& key) {
  return {reinterpret_cast<const char*>(key.data()), key.size()};
}

std::optional<Key> decode_key(std::string_view b64) {
  auto raw = base64_decode(b64);
  if (!raw || raw->size() != Key{}.size()) return std::nullopt;
  Key key{};
  std::copy(raw->begin(), raw->end(), key.begin());
  return key;
}

bool keys_equal(const Key& a, const Key& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Key xor_keys(const Key& a, const Key& b) {
  Key out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] ^ b[i];
  return out;
}

// RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII except ','.
bool is_printable_nonce(std::string_view nonce) {
  return !nonce.empty() && std::all_of(nonce.begin(), nonce.end(),
                                       [](char c) { return c >= 0x21 && c <= 0x7e && c != ','; });
}

// Decimal without sign, leading '+', or overflow; 0 is returned as 0 for the caller to judge.
std::optional<std::uint32_t> parse_uint32(std::string_view text) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (value > UINT32_MAX) return std::nullopt;
  return static_cast<std::uint32_t>(value);
}

// Splits a bounded, NUL-free message on ','. Attribute values never contain ',' in SCRAM, so this
// is exact; an empty message yields one empty field, which no caller accepts.
std::optional<std::vector<std::string_view>> split_message(std::string_view message) {
  if (message.size() > kMaxMessageLength) return std::nullopt;
  if (message.find('\0') != std::string_view::npos) return std::nullopt;
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = message.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(message.substr(start));
      return fields;
    }
    fields.push_back(message.substr(start, comma - start));
    start = comma + 1;
  }
}

// "<name>=<value>": returns the value.
std::optional<std::string_view> attribute(std::string_view field, char name) {
  if (field.size() < 2 || field[0] != name || field[1] != '=') return std::nullopt;
  return field.substr(2);
}

// RFC 5802 extension: ALPHA "=" 1*value-char. Unknown optional extensions are ignored, but one
// named after an attribute the RFC defines (a second "p=", say) is a malformed message.
bool is_extension(std::string_view field) {
  if (field.size() < 3 || field[1] != '=') return false;
  char c = field[0];
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return alpha && std::string_view("aceimnprsv").find(c) == std::string_view::npos;
}

bool all_extensions(const std::vector<std::string_view>& fields, std::size_t first,
                    std::size_t last) {
  for (std::size_t i = first; i < last; ++i) {
    if (!is_extension(fields[i])) return false;
  }
  return true;
}

}  // namespace

// ---- secrets and encodings -----------------------------------------------------------------

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (n > static_cast<std::size_t>(INT_MAX) ||
      (n > 0 &&
       RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return out;
}

std::string base64_encode(std::string_view raw) {
  std::string out;
  out.reserve((raw.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= raw.size(); i += 3) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(raw[i])) << 16 |
                      static_cast<std::uint32_t>(static_cast<unsigned char>(raw[i + 1])) << 8 |
                      static_cast<unsigned char>(raw[i + 2]);
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += kBase64Alphabet[(v >> 6) & 63];
    out += kBase64Alphabet[v & 63];
  }
  std::size_t rest = raw.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(raw[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(raw[i + 1])) << 8;
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += rest == 2 ? kBase64Alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Strict RFC 4648 base64: padded to a multiple of 4, no whitespace, '=' only as final padding,
// and unused trailing bits zero, so every byte string has exactly one accepted encoding.
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::size_t padding = 0;
  if (!text.empty() && text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    std::size_t data_chars = last ? 4 - padding : 4;
    std::uint32_t v = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      int d = j < data_chars ? base64_value(text[i + j]) : 0;
      if (d < 0) return std::nullopt;
      v = v << 6 | static_cast<std::uint32_t>(d);
    }
    out += static_cast<char>((v >> 16) & 0xff);
    if (data_chars >= 3) out += static_cast<char>((v >> 8) & 0xff);
    if (data_chars == 4) out += static_cast<char>(v & 0xff);
    if ((data_chars == 2 && (v & 0xffff) != 0) || (data_chars == 3 && (v & 0xff) != 0)) {
      return std::nullopt;
    }
  }
  return out;
}

ScramSecret make_scram_secret(std::string_view password, std::string_view salt,
                              std::uint32_t iterations) {
  Key salted = salted_password(password, salt, iterations);
  ScramSecret secret;
  secret.iterations = iterations;
  secret.salt = std::string(salt);
  Key client_key = hmac_sha256(salted, "Client Key");
  secret.stored_key = sha256(client_key.data(), client_key.size());
  secret.server_key = hmac_sha256(salted, "Server Key");
  OPENSSL_cleanse(salted.data(), salted.size());
  OPENSSL_cleanse(client_key.data(), client_key.size());
  return secret;
}

std::optional<ScramSecret> parse_scram_verifier(std::string_view text) {
  if (text.size() > kMaxMessageLength ||
      text.substr(0, kMechanismPrefix.size()) != kMechanismPrefix) {
    return std::nullopt;
  }
  text.remove_prefix(kMechanismPrefix.size());
  // <iterations>:<salt>$<stored>:<server>
  std::size_t colon1 = text.find(':');
  std::size_t dollar = text.find('$');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || dollar < colon1) {
    return std::nullopt;
  }
  std::size_t colon2 = text.find(':', dollar);
  if (colon2 == std::string_view::npos) return std::nullopt;
  auto iterations = parse_uint32(text.substr(0, colon1));
  auto salt = base64_decode(text.substr(colon1 + 1, dollar - colon1 - 1));
  auto stored = decode_key(text.substr(dollar + 1, colon2 - dollar - 1));
  auto server = decode_key(text.substr(colon2 + 1));
  if (!iterations || *iterations == 0 || !salt || salt->empty() || !stored || !server) {
    return std::nullopt;
  }
  return ScramSecret{*iterations, std::move(*salt), *stored, *server};
}

std::string format_scram_verifier(const ScramSecret& secret) {
  return std::string(kMechanismPrefix) + std::to_string(secret.iterations) + ":" +
         base64_encode(secret.salt) + "$" + base64_encode(as_view(secret.stored_key)) + ":" +
         base64_encode(as_view(secret.server_key));
}

std::string_view to_string(ScramError e) {
  switch (e) {
    case ScramError::None:
      return "none";
    case ScramError::Malformed:
      return "malformed SCRAM message";
    case ScramError::ChannelBinding:
      return "client requires SCRAM channel binding, which is not offered";
    case ScramError::NonceMismatch:
      return "SCRAM nonce mismatch";
    case ScramError::BadProof:
      return "SCRAM proof did not verify (wrong password)";
    case ScramError::BadServerSignature:
      return "SCRAM server signature did not verify";
    case ScramError::ServerError:
      return "SCRAM server reported an error";
  }
  return "unknown SCRAM error";
}

// ---- ScramServer ---------------------------------------------------------------------------

ScramServer::ScramServer(ScramSecret secret, std::string nonce)
    : secret_(std::move(secret)), server_nonce_(std::move(nonce)) {
  if (!is_printable_nonce(server_nonce_)) throw std::invalid_argument("invalid SCRAM server nonce");
}

// client-first-message = gs2-header client-first-message-bare
//   gs2-header = ("n" / "y" / "p=" cb-name) "," [authzid] ","
//   client-first-message-bare = [reserved-mext ","] "n=" saslname "," "r=" c-nonce [extensions]
std::optional<std::string> ScramServer::handle_client_first(std::string_view message) {
  if (error_ != ScramError::None) return std::nullopt;
  auto fail = [this](ScramError e) -> std::optional<std::string> {
    error_ = e;
    return std::nullopt;
  };
  if (!server_first_.empty()) return fail(ScramError::Malformed);
  auto fields = split_message(message);
  if (!fields || fields->size() < 4) return fail(ScramError::Malformed);
  const auto& f = *fields;
  if (f[0].substr(0, 2) == "p=") return fail(ScramError::ChannelBinding);
  if (f[0] != "n" && f[0] != "y") return fail(ScramError::Malformed);
  // An authorization identity is not supported (PostgreSQL rejects it too).
  if (!f[1].empty()) return fail(ScramError::Malformed);
  // f[2] starts the bare message; "m=" (mandatory extension) lands here and is rejected.
  auto user = attribute(f[2], 'n');
  auto client_nonce = attribute(f[3], 'r');
  if (!user || !client_nonce || !is_printable_nonce(*client_nonce) ||
      !all_extensions(f, 4, f.size())) {
    return fail(ScramError::Malformed);
  }
  // PostgreSQL ignores the SCRAM user name (the startup packet's one counts), so it is unchecked.
  gs2_header_ = std::string(message.substr(0, f[0].size() + 2));
  client_first_bare_ = std::string(message.substr(gs2_header_.size()));
  combined_nonce_ = std::string(*client_nonce) + server_nonce_;
  server_first_ = "r=" + combined_nonce_ + ",s=" + base64_encode(secret_.salt) +
                  ",i=" + std::to_string(secret_.iterations);
  return server_first_;
}

// client-final-message = "c=" base64(gs2-header) "," "r=" nonce ["," extensions] "," "p=" proof
std::optional<std::string> ScramServer::handle_client_final(std::string_view message) {
  if (error_ != ScramError::None) return std::nullopt;
  auto fail = [this](ScramError e) -> std::optional<std::string> {
    error_ = e;
    return std::nullopt;
  };
  if (server_first_.empty() || client_key_) return fail(ScramError::Malformed);
  auto fields = split_message(message);
  if (!fields || fields->size() < 3) return fail(ScramError::Malformed);
  const auto& f = *fields;
  auto binding = attribute(f[0], 'c');
  auto nonce = attribute(f[1], 'r');
  auto proof_b64 = attribute(f.back(), 'p');
  if (!binding || !nonce || !proof_b64 || !all_extensions(f, 2, f.size() - 1)) {
    return fail(ScramError::Malformed);
  }
  auto proof = decode_key(*proof_b64);
  auto binding_raw = base64_decode(*binding);
  if (!proof || !binding_raw || *binding_raw != gs2_header_) return fail(ScramError::Malformed);
  if (*nonce != combined_nonce_) return fail(ScramError::NonceMismatch);

  std::string_view without_proof = message.substr(0, message.size() - f.back().size() - 1);
  std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  Key client_key = xor_keys(*proof, hmac_sha256(secret_.stored_key, auth_message));
  if (!keys_equal(sha256(client_key.data(), client_key.size()), secret_.stored_key)) {
    return fail(ScramError::BadProof);
  }
  client_key_ = client_key;
  return "v=" + base64_encode(as_view(hmac_sha256(secret_.server_key, auth_message)));
}

// ---- ScramClient ---------------------------------------------------------------------------

ScramClient::ScramClient(std::string password, std::string nonce)
    : password_(std::move(password)), nonce_(std::move(nonce)) {
  if (!is_printable_nonce(nonce_)) throw std::invalid_argument("invalid SCRAM client nonce");
}

ScramClient::ScramClient(Key client_key, Key server_key, std::string nonce)
    : client_key_(client_key), server_key_(server_key), nonce_(std::move(nonce)) {
  if (!is_printable_nonce(nonce_)) throw std::invalid_argument("invalid SCRAM client nonce");
}

std::string ScramClient::client_first() {
  client_first_bare_ = "n=,r=" + nonce_;
  return "n,," + client_first_bare_;
}

// server-first-message = [reserved-mext ","] "r=" nonce "," "s=" salt "," "i=" count [extensions]
std::optional<std::string> ScramClient::handle_server_first(std::string_view message) {
  if (error_ != ScramError::None) return std::nullopt;
  auto fail = [this](ScramError e) -> std::optional<std::string> {
    error_ = e;
    return std::nullopt;
  };
  if (client_first_bare_.empty() || !auth_message_.empty()) return fail(ScramError::Malformed);
  auto fields = split_message(message);
  if (!fields) return fail(ScramError::Malformed);
  const auto& f = *fields;
  if (attribute(f[0], 'e')) return fail(ScramError::ServerError);
  if (f.size() < 3) return fail(ScramError::Malformed);
  auto nonce = attribute(f[0], 'r');
  auto salt_b64 = attribute(f[1], 's');
  auto count = attribute(f[2], 'i');
  if (!nonce || !salt_b64 || !count || !all_extensions(f, 3, f.size())) {
    return fail(ScramError::Malformed);
  }
  auto salt = base64_decode(*salt_b64);
  auto iterations = parse_uint32(*count);
  if (!salt || salt->empty() || !iterations || *iterations == 0 ||
      *iterations > kMaxClientIterations || !is_printable_nonce(*nonce)) {
    return fail(ScramError::Malformed);
  }
  // The server must extend our nonce with its own part.
  if (nonce->size() <= nonce_.size() || nonce->substr(0, nonce_.size()) != nonce_) {
    return fail(ScramError::NonceMismatch);
  }
  if (password_) {
    Key salted = salted_password(*password_, *salt, *iterations);
    client_key_ = hmac_sha256(salted, "Client Key");
    server_key_ = hmac_sha256(salted, "Server Key");
    OPENSSL_cleanse(salted.data(), salted.size());
  }
  std::string without_proof = "c=biws,r=" + std::string(*nonce);
  auth_message_ = client_first_bare_ + "," + std::string(message) + "," + without_proof;
  Key stored_key = sha256(client_key_.data(), client_key_.size());
  Key proof = xor_keys(client_key_, hmac_sha256(stored_key, auth_message_));
  return without_proof + ",p=" + base64_encode(as_view(proof));
}

// server-final-message = ("e=" server-error-value / "v=" base64 signature) ["," extensions]
bool ScramClient::handle_server_final(std::string_view message) {
  if (error_ != ScramError::None) return false;
  auto fail = [this](ScramError e) {
    error_ = e;
    return false;
  };
  if (auth_message_.empty()) return fail(ScramError::Malformed);
  auto fields = split_message(message);
  if (!fields) return fail(ScramError::Malformed);
  const auto& f = *fields;
  if (attribute(f[0], 'e')) return fail(ScramError::ServerError);
  auto verifier_b64 = attribute(f[0], 'v');
  if (!verifier_b64 || !all_extensions(f, 1, f.size())) return fail(ScramError::Malformed);
  auto signature = decode_key(*verifier_b64);
  if (!signature) return fail(ScramError::Malformed);
  if (!keys_equal(*signature, hmac_sha256(server_key_, auth_message_))) {
    return fail(ScramError::BadServerSignature);
  }
  return true;
}

}  // namespace sluice::auth
