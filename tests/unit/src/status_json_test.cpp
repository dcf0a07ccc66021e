// status_json: valid JSON whatever the names hold, every key of the documented schema present,
// null where a value is not known yet. A small strict JSON parser checks the output.
#include "src/http/status_json.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using sluice::config::StatusDetail;
using sluice::http::json_number;
using sluice::http::json_string;
using sluice::http::status_json;

struct Json {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string text;
  std::vector<Json> items;
  std::map<std::string, Json> members;

  const Json& operator[](const std::string& key) const {
    INFO("key " << key);
    REQUIRE(kind == Kind::Object);
    auto it = members.find(key);
    REQUIRE(it != members.end());
    return it->second;
  }
};

// RFC 8259, strictly (no trailing commas, no leading zeros, only the defined escapes).
class Parser {
 public:
  explicit Parser(std::string_view in) : in_(in) {}

  bool parse(Json& out) {
    if (!value(out)) return false;
    skip_ws();
    return pos_ == in_.size();
  }

 private:
  void skip_ws() {
    while (pos_ < in_.size() && std::string_view(" \t\r\n").find(in_[pos_]) != std::string::npos) {
      ++pos_;
    }
  }
  bool literal(std::string_view word) {
    if (in_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  bool value(Json& out) {
    skip_ws();
    if (pos_ >= in_.size()) return false;
    char c = in_[pos_];
    if (c == '{') return object(out);
    if (c == '[') return array(out);
    if (c == '"') {
      out.kind = Json::Kind::String;
      return string(out.text);
    }
    if (c == 't' || c == 'f') {
      out.kind = Json::Kind::Bool;
      out.boolean = c == 't';
      return literal(c == 't' ? "true" : "false");
    }
    if (c == 'n') return literal("null");
    return number(out);
  }
  bool object(Json& out) {
    out.kind = Json::Kind::Object;
    ++pos_;
    skip_ws();
    if (pos_ < in_.size() && in_[pos_] == '}') return ++pos_, true;
    for (;;) {
      skip_ws();
      std::string key;
      if (pos_ >= in_.size() || in_[pos_] != '"' || !string(key)) return false;
      skip_ws();
      if (pos_ >= in_.size() || in_[pos_++] != ':') return false;
      if (out.members.count(key) != 0) return false;  // duplicate key
      if (!value(out.members[key])) return false;
      skip_ws();
      if (pos_ >= in_.size()) return false;
      char c = in_[pos_++];
      if (c == '}') return true;
      if (c != ',') return false;
    }
  }
  bool array(Json& out) {
    out.kind = Json::Kind::Array;
    ++pos_;
    skip_ws();
    if (pos_ < in_.size() && in_[pos_] == ']') return ++pos_, true;
    for (;;) {
      out.items.emplace_back();
      if (!value(out.items.back())) return false;
      skip_ws();
      if (pos_ >= in_.size()) return false;
      char c = in_[pos_++];
      if (c == ']') return true;
      if (c != ',') return false;
    }
  }
  bool string(std::string& out) {
    ++pos_;
    while (pos_ < in_.size()) {
      auto c = static_cast<unsigned char>(in_[pos_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (pos_ >= in_.size()) return false;
      char e = in_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          if (pos_ + 4 > in_.size()) return false;
          unsigned code = 0;
          for (int i = 0; i < 4; ++i) {
            char h = in_[pos_++];
            code <<= 4;
            if (h >= '0' && h <= '9') {
              code |= static_cast<unsigned>(h - '0');
            } else if (h >= 'a' && h <= 'f') {
              code |= static_cast<unsigned>(h - 'a' + 10);
            } else if (h >= 'A' && h <= 'F') {
              code |= static_cast<unsigned>(h - 'A' + 10);
            } else {
              return false;
            }
          }
          append_utf8(out, code);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xC0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      out += static_cast<char>(0xE0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }
  bool number(Json& out) {
    std::size_t start = pos_;
    auto digits = [this] {
      std::size_t s = pos_;
      while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') ++pos_;
      return pos_ - s;
    };
    if (pos_ < in_.size() && in_[pos_] == '-') ++pos_;
    if (pos_ < in_.size() && in_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      return false;
    }
    if (pos_ < in_.size() && in_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) return false;
    }
    if (pos_ < in_.size() && (in_[pos_] == 'e' || in_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < in_.size() && (in_[pos_] == '+' || in_[pos_] == '-')) ++pos_;
      if (digits() == 0) return false;
    }
    out.kind = Json::Kind::Number;
    out.number = std::stod(std::string(in_.substr(start, pos_ - start)));
    return true;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
};

Json parse_json(const std::string& text) {
  INFO(text);
  Json j;
  REQUIRE(Parser(text).parse(j));
  return j;
}

void require_keys(const Json& j, std::initializer_list<const char*> keys) {
  REQUIRE(j.kind == Json::Kind::Object);
  for (const char* k : keys) {
    INFO("missing key " << k);
    CHECK(j.members.count(k) == 1);
  }
  CHECK(j.members.size() == keys.size());
}

sluice::Snapshot sample_snapshot() {
  sluice::Snapshot s;
  s.taken = std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123));
  sluice::ServerSnapshot server;
  server.name = "main \"primary\"";
  server.host = "db\\1";
  server.port = 5432;
  server.admission.capacity = 20;
  server.admission.breaker = sluice::pools::BreakerState::HalfOpen;
  server.backends.active = 4;
  server.connect_attempts = 9;
  s.servers.push_back(server);

  sluice::BulkheadSnapshot bulk;
  bulk.server = "main";
  bulk.stats.name = "batch\n\x01";
  bulk.stats.in_use = 3;
  bulk.stats.refused[static_cast<std::size_t>(sluice::pools::RefusalReason::PredictedWait)] = 2;
  bulk.stats.refused[static_cast<std::size_t>(sluice::pools::RefusalReason::ServerDown)] = 5;
  s.bulkheads.push_back(bulk);
  bulk.stats.name = "web";
  bulk.stats.oldest_wait = std::chrono::microseconds(2500);
  bulk.stats.mean_hold = std::chrono::duration<double, std::milli>(12.25);
  bulk.stats.lifo = true;
  s.bulkheads.push_back(bulk);

  sluice::PoolSnapshot pool;
  pool.database = "app";
  pool.user = "app_user";
  pool.server = "main";
  pool.pool_mode = "transaction";
  pool.pool_size = 20;
  pool.traffic.bytes_out = 1ULL << 40;
  s.pools.push_back(pool);

  s.process.clients_by_state[static_cast<std::size_t>(sluice::ClientState::Active)] = 3;
  s.process.clients_accepted = 17;
  s.process.protocol_errors = 2;
  return s;
}

}  // namespace

TEST_CASE("JSON strings escape quotes, backslashes and control characters", "[http]") {
  CHECK(json_string("plain") == "\"plain\"");
  CHECK(json_string("a\"b\\c") == R"("a\"b\\c")");
  CHECK(json_string(std::string("\n\t\x01\x1f\x7f", 5)) == R"("\u000a\u0009\u0001\u001f\u007f")");
  CHECK(json_string(std::string("nul\0here", 8)) == R"("nul\u0000here")");
  CHECK(json_string("") == "\"\"");
}

TEST_CASE("JSON strings keep valid UTF-8 and replace invalid bytes", "[http]") {
  CHECK(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK(json_string("a\xff"
                    "b") == R"("a\ufffdb")");
  CHECK(json_string("\xc0\xaf") == R"("\ufffd\ufffd")");                      // overlong '/'
  CHECK(json_string("\xed\xa0\x80") == R"("\ufffd\ufffd\ufffd")");            // surrogate
  CHECK(json_string("\xe2\x82") == R"("\ufffd\ufffd")");                      // truncated
  CHECK(json_string("\xf4\x90\x80\x80") == R"("\ufffd\ufffd\ufffd\ufffd")");  // > U+10FFFF
}

TEST_CASE("JSON numbers round-trip and are never NaN or infinite", "[http]") {
  CHECK(json_number(0) == "0");
  CHECK(json_number(0.5) == "0.5");
  CHECK(json_number(1700000000.123) == "1700000000.123");
  CHECK(std::stod(json_number(0.1 + 0.2)) == 0.1 + 0.2);
  CHECK(json_number(std::numeric_limits<double>::quiet_NaN()) == "null");
  CHECK(json_number(std::numeric_limits<double>::infinity()) == "null");
  CHECK(json_number(-std::numeric_limits<double>::infinity()) == "null");
  Json j = parse_json("[" + json_number(1e300) + "," + json_number(-2.5e-300) + "]");
  CHECK(j.items.at(0).number == 1e300);
}

TEST_CASE("status_json has every key of the schema", "[http]") {
  Json j = parse_json(status_json(sample_snapshot(), StatusDetail::Full));
  require_keys(j, {"version", "time", "servers", "bulkheads", "pools", "clients", "protocol_errors",
                   "detail"});
  CHECK(j["detail"].text == "full");
  CHECK(j["version"].text == SLUICE_VERSION);
  CHECK(j["time"].number == Approx(1700000000.123));
  CHECK(j["protocol_errors"].number == 2);
  require_keys(j["clients"], {"login", "idle", "waiting", "active", "accepted_total"});
  CHECK(j["clients"]["active"].number == 3);
  CHECK(j["clients"]["accepted_total"].number == 17);

  REQUIRE(j["servers"].items.size() == 1);
  const Json& server = j["servers"].items[0];
  require_keys(server, {"name", "host", "port", "capacity", "in_use", "shared", "borrowed",
                        "waiters", "breaker", "consecutive_connect_failures", "backends",
                        "connect_attempts", "connect_failures"});
  CHECK(server["name"].text == "main \"primary\"");
  CHECK(server["host"].text == "db\\1");
  CHECK(server["breaker"].text == "half_open");
  require_keys(server["backends"], {"connecting", "idle", "active"});
  CHECK(server["backends"]["active"].number == 4);
  CHECK(server["connect_attempts"].number == 9);

  REQUIRE(j["bulkheads"].items.size() == 2);
  for (const Json& b : j["bulkheads"].items) {
    require_keys(b, {"server",         "name",        "priority", "reserved",   "max",
                     "queue_depth",    "max_wait_ms", "in_use",   "borrowed",   "waiters",
                     "oldest_wait_ms", "clients",     "admitted", "handed_off", "queued",
                     "expired",        "cancelled",   "timeouts", "refused",    "refused_total",
                     "mean_hold_ms",   "lifo",        "retired"});
    require_keys(b["refused"], {"queue_full", "queue_age", "predicted_wait", "max_wait",
                                "rate_limit", "max_clients", "server_down"});
    CHECK(b["refused"]["server_down"].number == 5);
    CHECK(b["refused_total"].number == 7);
    CHECK(b["retired"].kind == Json::Kind::Bool);
  }
  const Json& batch = j["bulkheads"].items[0];
  CHECK(batch["name"].text == "batch\n\x01");
  CHECK(batch["oldest_wait_ms"].kind == Json::Kind::Number);
  CHECK(batch["oldest_wait_ms"].number == 0);
  CHECK(batch["mean_hold_ms"].kind == Json::Kind::Null);
  CHECK(batch["lifo"].boolean == false);
  const Json& web = j["bulkheads"].items[1];
  CHECK(web["oldest_wait_ms"].number == Approx(2.5));
  CHECK(web["mean_hold_ms"].number == Approx(12.25));
  CHECK(web["lifo"].boolean == true);

  REQUIRE(j["pools"].items.size() == 1);
  const Json& pool = j["pools"].items[0];
  require_keys(pool,
               {"database", "user", "users", "server", "pool_mode", "pool_size", "backends",
                "slots_in_use", "paused", "transactions", "queries", "bytes_in", "bytes_out"});
  CHECK(pool["user"].text == "app_user");
  CHECK(pool["users"].number == 1);
  CHECK(pool["pool_mode"].text == "transaction");
  CHECK(pool["bytes_out"].number == static_cast<double>(1ULL << 40));
  CHECK(pool["paused"].kind == Json::Kind::Bool);
}

TEST_CASE("status_json of an empty snapshot is valid", "[http]") {
  Json j = parse_json(status_json(sluice::Snapshot{}, StatusDetail::Redacted));
  CHECK(j["servers"].items.empty());
  CHECK(j["bulkheads"].items.empty());
  CHECK(j["pools"].items.empty());
  CHECK(j["clients"]["login"].number == 0);
}

TEST_CASE("redacted status_json names no server address and no user, and sums each database",
          "[http]") {
  sluice::Snapshot snap = sample_snapshot();
  sluice::PoolSnapshot second = snap.pools[0];
  second.user = "mallory";
  second.pool_size = 30;  // raised by a reload while one pool had not caught up: the larger
  second.backends.idle = 2;
  second.slots_in_use = 1;
  second.paused = true;
  second.traffic.queries = 5;
  snap.pools.push_back(second);
  sluice::PoolSnapshot other = snap.pools[0];
  other.database = "reports";
  other.user = "eve";
  other.traffic = {};
  other.traffic.queries = 1;
  snap.pools.push_back(other);

  const std::string text = status_json(snap, StatusDetail::Redacted);
  for (const char* secret : {"db\\\\1", "5432", "app_user", "mallory", "eve"}) {
    INFO(secret);
    CHECK(text.find(secret) == std::string::npos);
  }
  Json j = parse_json(text);
  CHECK(j["detail"].text == "redacted");
  const Json& server = j["servers"].items.at(0);
  CHECK(server["host"].kind == Json::Kind::Null);
  CHECK(server["port"].kind == Json::Kind::Null);
  CHECK(server["name"].text == "main \"primary\"");  // config names stay
  REQUIRE(j["pools"].items.size() == 2);
  const Json& app = j["pools"].items[0];
  CHECK(app["database"].text == "app");
  CHECK(app["user"].kind == Json::Kind::Null);
  CHECK(app["users"].number == 2);
  CHECK(app["pool_size"].number == 30);
  CHECK(app["backends"]["idle"].number == 2);
  CHECK(app["slots_in_use"].number == 1);
  CHECK(app["paused"].boolean);
  CHECK(app["queries"].number == 5);
  CHECK(app["bytes_out"].number == static_cast<double>(2 * (1ULL << 40)));
  const Json& reports = j["pools"].items[1];
  CHECK(reports["database"].text == "reports");
  CHECK(reports["users"].number == 1);
  CHECK(reports["queries"].number == 1);
}
