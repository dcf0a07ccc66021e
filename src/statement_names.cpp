#include "src/statement_names.hpp"

#include "src/intern_table.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace sluice {
namespace {

const std::array<unsigned char, 32>& process_key() {
  static const std::array<unsigned char, 32> key = [] {
    std::array<unsigned char, 32> k{};
    if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1) {
      throw std::runtime_error("RAND_bytes failed: no key for statement names");
    }
    return k;
  }();
  return key;
}

struct BodyKey {
  std::string_view operator()(const std::string& body) const { return body; }
};

InternTable<std::string, BodyKey>& bodies() {
  static InternTable<std::string, BodyKey> table;
  return table;
}

}  // namespace

std::string statement_backend_name(std::string_view body) {
  const auto& key = process_key();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name = "sluice_";
  for (unsigned int i = 0; i < 16 && i < length; ++i) {
    name += kHex[digest[i] >> 4];
    name += kHex[digest[i] & 0xf];
  }
  return name;
}

std::shared_ptr<const std::string> intern_statement_body(std::string_view body) {
  if (auto in_use = bodies().find(body)) return in_use;
  return bodies().intern(std::make_unique<const std::string>(body));
}

std::size_t statement_bodies_in_use() { return bodies().size(); }

}  // namespace sluice
