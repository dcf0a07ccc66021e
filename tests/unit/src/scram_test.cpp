// SCRAM-SHA-256: RFC 7677 section 3 vector through both roles, plus hostile-input handling.
#include "src/auth/scram.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>

using namespace std::string_literals;
using sluice::auth::Key;
using sluice::auth::ScramClient;
using sluice::auth::ScramError;
using sluice::auth::ScramSecret;
using sluice::auth::ScramServer;

namespace {

// RFC 7677 section 3.
const std::string kClientNonce = "rOprNGfwEbeRWgbNEkqO";
const std::string kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const std::string kCombinedNonce = kClientNonce + kServerNonce;
const std::string kSaltB64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
const std::string kClientFirst = "n,,n=user,r=" + kClientNonce;
const std::string kServerFirst = "r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=4096";
const std::string kClientFinal =
    "c=biws,r=" + kCombinedNonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const std::string kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
// The same exchange with the empty user name ScramClient sends ("n="), computed independently
// with Python's hashlib/hmac.
const std::string kClientFinalNoUser =
    "c=biws,r=" + kCombinedNonce + ",p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=";
const std::string kServerFinalNoUser = "v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=";
// format_scram_verifier(make_scram_secret("pencil", salt, 4096)), computed with Python.
const std::string kPencilVerifier =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

ScramSecret pencil_secret() {
  return sluice::auth::make_scram_secret("pencil", *sluice::auth::base64_decode(kSaltB64), 4096);
}

// Runs the RFC exchange through a server and returns it after the client-final step.
ScramServer rfc_server_run() {
  ScramServer server(pencil_secret(), kServerNonce);
  REQUIRE(server.handle_client_first(kClientFirst) == kServerFirst);
  REQUIRE(server.handle_client_final(kClientFinal) == kServerFinal);
  return server;
}

}  // namespace

TEST_CASE("A secret derived from a password formats as PostgreSQL's verifier", "[auth]") {
  CHECK(sluice::auth::format_scram_verifier(pencil_secret()) == kPencilVerifier);
}

TEST_CASE("The server reproduces the RFC 7677 exchange", "[auth]") {
  ScramServer server = rfc_server_run();
  CHECK(server.error() == ScramError::None);
  REQUIRE(server.client_key().has_value());
  // ClientKey = HMAC(SaltedPassword, "Client Key"), computed with Python.
  auto expected = sluice::auth::base64_decode("pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos=");
  REQUIRE(expected);
  CHECK(std::string(server.client_key()->begin(), server.client_key()->end()) == *expected);
}

TEST_CASE("The server accepts the 'y' GS2 flag and echoes it in the binding check", "[auth]") {
  ScramServer server(pencil_secret(), kServerNonce);
  REQUIRE(server.handle_client_first("y,,n=user,r=" + kClientNonce) == kServerFirst);
  // The RFC proof was made over "c=biws", so with "eSws" ("y,,") the proof no longer matches.
  auto result = server.handle_client_final("c=eSws,r=" + kCombinedNonce +
                                           ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  CHECK_FALSE(result);
  CHECK(server.error() == ScramError::BadProof);
}

TEST_CASE("The server rejects a c= that does not echo the client's GS2 header", "[auth]") {
  ScramServer server(pencil_secret(), kServerNonce);
  REQUIRE(server.handle_client_first(kClientFirst));
  CHECK_FALSE(server.handle_client_final("c=eSws,r=" + kCombinedNonce +
                                         ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
  CHECK(server.error() == ScramError::Malformed);
}

TEST_CASE("The client with a password reproduces the RFC 7677 exchange", "[auth]") {
  ScramClient client("pencil", kClientNonce);
  CHECK(client.client_first() == "n,,n=,r=" + kClientNonce);
  CHECK(client.handle_server_first(kServerFirst) == kClientFinalNoUser);
  CHECK(client.handle_server_final(kServerFinalNoUser));
  CHECK(client.error() == ScramError::None);
}

TEST_CASE("The client and server authenticate each other", "[auth]") {
  ScramServer server(pencil_secret(), kServerNonce);
  ScramClient client("pencil", kClientNonce);
  auto server_first = server.handle_client_first(client.client_first());
  REQUIRE(server_first == kServerFirst);
  auto client_final = client.handle_server_first(*server_first);
  REQUIRE(client_final == kClientFinalNoUser);
  auto server_final = server.handle_client_final(*client_final);
  REQUIRE(server_final == kServerFinalNoUser);
  CHECK(client.handle_server_final(*server_final));
}

TEST_CASE("The client in passthrough mode uses the ClientKey recovered by the server", "[auth]") {
  ScramServer server = rfc_server_run();
  REQUIRE(server.client_key());
  ScramClient client(*server.client_key(), server.secret().server_key, kClientNonce);
  client.client_first();
  // Passthrough ignores salt and iterations: the keys already embody them.
  CHECK(client.handle_server_first(kServerFirst) == kClientFinalNoUser);
  CHECK(client.handle_server_final(kServerFinalNoUser));
  CHECK(client.error() == ScramError::None);
}

TEST_CASE("The server rejects a wrong password", "[auth]") {
  ScramServer server(pencil_secret(), kServerNonce);
  ScramClient client("pencil!", kClientNonce);
  auto client_final =
      client.handle_server_first(*server.handle_client_first(client.client_first()));
  REQUIRE(client_final);
  CHECK_FALSE(server.handle_client_final(*client_final));
  CHECK(server.error() == ScramError::BadProof);
  CHECK_FALSE(server.client_key());
  // A failed exchange stays failed.
  CHECK_FALSE(server.handle_client_final(kClientFinal));
}

TEST_CASE("The server rejects a tampered nonce in client-final", "[auth]") {
  ScramServer server(pencil_secret(), kServerNonce);
  REQUIRE(server.handle_client_first(kClientFirst));
  std::string tampered = kClientFinal;
  tampered[12] = tampered[12] == 'x' ? 'y' : 'x';
  CHECK_FALSE(server.handle_client_final(tampered));
  CHECK(server.error() == ScramError::NonceMismatch);
}

TEST_CASE("The client rejects a server nonce that does not extend its own", "[auth]") {
  auto server_first =
      GENERATE(as<std::string>{}, "r=XOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
               "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
               "r=rOprNGfwEbeRWgbNEk,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  ScramClient client("pencil", kClientNonce);
  client.client_first();
  CHECK_FALSE(client.handle_server_first(server_first));
  CHECK(client.error() == ScramError::NonceMismatch);
}

TEST_CASE("The server refuses channel binding it does not offer", "[auth]") {
  ScramServer server(pencil_secret(), kServerNonce);
  CHECK_FALSE(server.handle_client_first("p=tls-server-end-point,,n=,r=" + kClientNonce));
  CHECK(server.error() == ScramError::ChannelBinding);
}

TEST_CASE("The server rejects malformed client messages", "[auth]") {
  auto [first, final_message] = GENERATE(table<std::string, std::string>({
      {"", ""},
      {"n,,", ""},
      {"n,,n=", ""},
      {"n,,n=user", ""},
      {"n,,r=" + kClientNonce, ""},
      {"n,,n=user,r=", ""},
      {"n,,n=user,r=abc,d", ""},                      // extension without '='
      {"n,,n=user,r=abc,", ""},                       // trailing comma
      {"n,a=admin,n=user,r=abc", ""},                 // authzid
      {"n,,m=ext,n=user,r=abc", ""},                  // mandatory extension
      {"x,,n=user,r=abc", ""},                        // unknown GS2 flag
      {"nn,,n=user,r=abc", ""},                       // long GS2 flag
      {"n,n=user,r=abc", ""},                         // missing authzid slot
      {"n;,n=user,r=abc", ""},                        // no comma
      {"n,,n=user,r=ab\x7f", ""},                     // nonce not printable
      {"n,,n=user,r=a\0b"s, ""},                      // embedded NUL
      {"n,,n=us\0er,r=abc"s, ""},                     // embedded NUL in the user name
      {"n,,n=user,r=" + std::string(5000, 'a'), ""},  // oversized
      {kClientFirst, ""},
      {kClientFirst, "c=biws"},
      {kClientFirst, "c=biws,r=" + kCombinedNonce},
      {kClientFirst, "r=" + kCombinedNonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="},
      {kClientFirst, "c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="},
      {kClientFirst, "c=biws,r=" + kCombinedNonce + ",p="},
      {kClientFirst,
       "c=biws,r=" + kCombinedNonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ"},
      {kClientFirst,
       "c=biws,r=" + kCombinedNonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmm!z7AndVQ="},
      {kClientFirst, "c=biws,r=" + kCombinedNonce + ",p=dHzbZapW"},  // proof too short
      {kClientFirst,
       "c=bi_s,r=" + kCombinedNonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="},
      {kClientFirst,
       "c=biw=,r=" + kCombinedNonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="},
      {kClientFirst, kClientFinal + ",x=1"},  // proof not last
      {kClientFirst, kClientFinal + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="},
      {kClientFirst, kClientFinal + "\0"s},
      {kClientFirst,
       "c=biws,r=" + kCombinedNonce + ",1=x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="},
  }));
  ScramServer server(pencil_secret(), kServerNonce);
  auto server_first = server.handle_client_first(first);
  if (server_first) CHECK_FALSE(server.handle_client_final(final_message));
  CHECK(server.error() == ScramError::Malformed);
  CHECK_FALSE(server.client_key());
}

TEST_CASE("The server accepts unknown optional extensions", "[auth]") {
  ScramServer server(pencil_secret(), kServerNonce);
  // The RFC proof covers only the RFC messages, so only the parse is checked here.
  auto server_first = server.handle_client_first(kClientFirst + ",x=ext");
  CHECK(server_first == kServerFirst);
  CHECK_FALSE(server.handle_client_final("c=biws,r=" + kCombinedNonce + ",x=ext," +
                                         kClientFinal.substr(kClientFinal.find("p="))));
  CHECK(server.error() == ScramError::BadProof);
}

TEST_CASE("The server rejects messages out of order", "[auth]") {
  SECTION("final before first") {
    ScramServer server(pencil_secret(), kServerNonce);
    CHECK_FALSE(server.handle_client_final(kClientFinal));
    CHECK(server.error() == ScramError::Malformed);
  }
  SECTION("first twice") {
    ScramServer server(pencil_secret(), kServerNonce);
    REQUIRE(server.handle_client_first(kClientFirst));
    CHECK_FALSE(server.handle_client_first(kClientFirst));
    CHECK(server.error() == ScramError::Malformed);
  }
  SECTION("final twice") {
    ScramServer server = rfc_server_run();
    CHECK_FALSE(server.handle_client_final(kClientFinal));
    CHECK(server.error() == ScramError::Malformed);
  }
}

TEST_CASE("The client rejects malformed server messages", "[auth]") {
  auto [server_first, server_final] = GENERATE(table<std::string, std::string>({
      {"", ""},
      {"r=" + kCombinedNonce, ""},
      {"r=" + kCombinedNonce + ",s=" + kSaltB64, ""},
      {"r=" + kCombinedNonce + ",i=4096", ""},
      {"s=" + kSaltB64 + ",r=" + kCombinedNonce + ",i=4096", ""},
      {"r=" + kCombinedNonce + ",s=,i=4096", ""},                          // empty salt
      {"r=" + kCombinedNonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", ""},   // bad padding
      {"r=" + kCombinedNonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096", ""},    // no padding
      {"r=" + kCombinedNonce + ",s=W22ZaJ0SNY7so sUEjb6gQ==,i=4096", ""},  // whitespace
      {"r=" + kCombinedNonce + ",s=W22ZaJ0SNY7soEsUEjb6gR==,i=4096", ""},  // nonzero pad bits
      {"r=" + kCombinedNonce + ",s=W2=ZaJ0SNY7soEsUEjb6gQ==,i=4096", ""},  // '=' inside
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=0", ""},
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=-1", ""},
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=+4096", ""},
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=4096x", ""},
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=", ""},
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=10000001", ""},  // huge iteration count
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=4294967296", ""},
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=99999999999999999999999", ""},
      {"r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=4096,", ""},
      {"r=" + kCombinedNonce + "\0,s="s + kSaltB64 + ",i=4096", ""},  // embedded NUL
      {"m=x,r=" + kCombinedNonce + ",s=" + kSaltB64 + ",i=4096", ""},
      {"r=" + kCombinedNonce + "\x01,s=" + kSaltB64 + ",i=4096", ""},
      {kServerFirst, ""},
      {kServerFirst, "v="},
      {kServerFirst, "v=3HO6Qt1M4MKJrmlKaoOqLAI0"},                     // too short
      {kServerFirst, "v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg"},  // no padding
      {kServerFirst, "x=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg="},
      {kServerFirst, kServerFinalNoUser + ","},
      {kServerFirst, kServerFinalNoUser + "\0"s},
  }));
  ScramClient client("pencil", kClientNonce);
  client.client_first();
  auto client_final = client.handle_server_first(server_first);
  if (client_final) CHECK_FALSE(client.handle_server_final(server_final));
  CHECK(client.error() == ScramError::Malformed);
}

TEST_CASE("The client reports a server's e= attribute", "[auth]") {
  SECTION("in server-first") {
    ScramClient client("pencil", kClientNonce);
    client.client_first();
    CHECK_FALSE(client.handle_server_first("e=other-error"));
    CHECK(client.error() == ScramError::ServerError);
  }
  SECTION("in server-final") {
    ScramClient client("pencil", kClientNonce);
    client.client_first();
    REQUIRE(client.handle_server_first(kServerFirst));
    CHECK_FALSE(client.handle_server_final("e=invalid-proof"));
    CHECK(client.error() == ScramError::ServerError);
  }
}

TEST_CASE("The client rejects a forged server signature", "[auth]") {
  ScramClient client("pencil", kClientNonce);
  client.client_first();
  REQUIRE(client.handle_server_first(kServerFirst));
  // The RFC's signature is for the exchange with n=user, not ours.
  CHECK_FALSE(client.handle_server_final(kServerFinal));
  CHECK(client.error() == ScramError::BadServerSignature);
}

TEST_CASE("The client requires client_first before server-first", "[auth]") {
  ScramClient client("pencil", kClientNonce);
  CHECK_FALSE(client.handle_server_first(kServerFirst));
  CHECK(client.error() == ScramError::Malformed);
}

TEST_CASE("Verifiers round-trip through parse and format", "[auth]") {
  auto secret = sluice::auth::parse_scram_verifier(kPencilVerifier);
  REQUIRE(secret);
  CHECK(secret->iterations == 4096);
  CHECK(sluice::auth::base64_encode(secret->salt) == kSaltB64);
  CHECK(secret->stored_key == pencil_secret().stored_key);
  CHECK(secret->server_key == pencil_secret().server_key);
  CHECK(sluice::auth::format_scram_verifier(*secret) == kPencilVerifier);

  auto random = sluice::auth::make_scram_secret("hunter2", sluice::auth::random_bytes(16), 1);
  auto parsed = sluice::auth::parse_scram_verifier(sluice::auth::format_scram_verifier(random));
  REQUIRE(parsed);
  CHECK(parsed->iterations == 1);
  CHECK(parsed->salt == random.salt);
  CHECK(parsed->stored_key == random.stored_key);
  CHECK(parsed->server_key == random.server_key);
}

TEST_CASE("Bad verifiers are rejected", "[auth]") {
  const std::string salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
  const std::string stored = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
  const std::string server = "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
  auto text = GENERATE_COPY(
      as<std::string>{}, "", "md5a3556571e93b0d20722ba62be61e8c2d", "SCRAM-SHA-256$",
      "SCRAM-SHA-1$4096:" + salt + "$" + stored + ":" + server,
      "scram-sha-256$4096:" + salt + "$" + stored + ":" + server,
      "SCRAM-SHA-256$0:" + salt + "$" + stored + ":" + server,
      "SCRAM-SHA-256$-1:" + salt + "$" + stored + ":" + server,
      "SCRAM-SHA-256$4294967296:" + salt + "$" + stored + ":" + server,
      "SCRAM-SHA-256$:" + salt + "$" + stored + ":" + server,
      "SCRAM-SHA-256$4096:$" + stored + ":" + server, "SCRAM-SHA-256$4096:" + salt + "$:" + server,
      "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":",
      "SCRAM-SHA-256$4096:" + salt + "$" + stored,
      "SCRAM-SHA-256$4096:" + salt + stored + ":" + server,
      "SCRAM-SHA-256$4096$" + salt + ":" + stored + ":" + server,
      "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":" + server + "$",
      "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":" + server + ":",
      "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":" + server + " ",
      "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":" + salt,
      "SCRAM-SHA-256$4096:" + salt + "$" + salt + ":" + server,
      "SCRAM-SHA-256$4096:!!!!$" + stored + ":" + server);
  CHECK_FALSE(sluice::auth::parse_scram_verifier(text));
}

TEST_CASE("Base64 round-trips and rejects non-canonical input", "[auth]") {
  for (std::string raw : {""s, "f"s, "fo"s, "foo"s, "foob"s, "fooba"s, "foobar"s, "\0\xff\x80"s}) {
    CHECK(sluice::auth::base64_decode(sluice::auth::base64_encode(raw)) == raw);
  }
  CHECK(sluice::auth::base64_encode("foobar") == "Zm9vYmFy");
  CHECK(sluice::auth::base64_encode("fooba") == "Zm9vYmE=");
  CHECK(sluice::auth::base64_encode("foob") == "Zm9vYg==");
  auto bad = GENERATE(as<std::string>{}, "Zm9vYmE", "Zm9vYg=", "Zm9vYg=A", "Zm9v=mFy", "=m9v",
                      "Zm9vYh==", "Zm9vYmF=", "Zm9 YmFy", "Zm9vYmFy\n", "Zm9-YmFy",
                      "Zm9vYg===", "====", "A===", "Zg==Zg==", "Zm9v\0mFy"s);
  CHECK_FALSE(sluice::auth::base64_decode(bad));
}

TEST_CASE("Random bytes have the requested length", "[auth]") {
  CHECK(sluice::auth::random_bytes(0).empty());
  CHECK(sluice::auth::random_bytes(18).size() == 18);
  CHECK(sluice::auth::random_bytes(32) != sluice::auth::random_bytes(32));
}

TEST_CASE("Every error has a description", "[auth]") {
  for (auto e : {ScramError::None, ScramError::Malformed, ScramError::ChannelBinding,
                 ScramError::NonceMismatch, ScramError::BadProof, ScramError::BadServerSignature,
                 ScramError::ServerError}) {
    CHECK_FALSE(sluice::auth::to_string(e).empty());
  }
}

TEST_CASE("Mutated messages never crash either side", "[auth]") {
  // Deterministic byte flips, truncations and splices of valid messages; the parsers must return
  // an error or a well-formed reply, never crash (run under ASan to make that meaningful).
  std::mt19937 rng(5802);
  auto mutate = [&rng](std::string s) {
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < edits && !s.empty(); ++i) {
      std::size_t pos = rng() % s.size();
      switch (rng() % 4) {
        case 0:
          s[pos] = static_cast<char>(rng() % 256);
          break;
        case 1:
          s.erase(pos, 1 + rng() % 8);
          break;
        case 2:
          s.insert(pos, 1, ",=\0pcrnsive"[rng() % 11]);
          break;
        default:
          s.resize(pos);
      }
    }
    return s;
  };
  const ScramSecret secret = pencil_secret();
  for (int i = 0; i < 2000; ++i) {
    ScramServer server(secret, kServerNonce);
    if (server.handle_client_first(i % 2 ? mutate(kClientFirst) : kClientFirst)) {
      if (server.handle_client_final(mutate(kClientFinal))) {
        CHECK(server.client_key());
      }
    }
    // Passthrough keys: the mutated i= is still parsed, but no PBKDF2 runs per iteration.
    ScramClient client(Key{}, Key{}, kClientNonce);
    client.client_first();
    if (client.handle_server_first(mutate(kServerFirst))) {
      client.handle_server_final(mutate(kServerFinalNoUser));
    }
  }
  SUCCEED();
}
