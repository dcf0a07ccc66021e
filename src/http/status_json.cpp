#include "src/http/status_json.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice::http {
namespace {

// The length of the valid UTF-8 sequence at the start of `s`, or 0 if it does not start with one
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
std::size_t utf8_sequence_length(std::string_view s) {
  auto byte = [&s](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](std::size_t i) { return i < s.size() && (byte(i) & 0xC0) == 0x80; };
  unsigned char b0 = byte(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (b0 == 0xE0 && byte(1) < 0xA0) return 0;   // overlong
    if (b0 == 0xED && byte(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (b0 == 0xF0 && byte(1) < 0x90) return 0;   // overlong
    if (b0 == 0xF4 && byte(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

void append_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  while (!text.empty()) {
    auto c = static_cast<unsigned char>(text.front());
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else if (c >= 0x80) {
      std::size_t n = utf8_sequence_length(text);
      if (n == 0) {
        out += "\\ufffd";
        n = 1;
      } else {
        out.append(text.substr(0, n));
      }
      text.remove_prefix(n);
      continue;
    } else {
      out += static_cast<char>(c);
    }
    text.remove_prefix(1);
  }
  out += '"';
}

void append_number(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, ec == std::errc() ? end : buf);
}

double to_ms(std::chrono::nanoseconds d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Writes JSON with commas placed automatically: values and keys go into the innermost open
// object or array.
class JsonWriter {
 public:
  std::string take() { return std::move(out_); }

  JsonWriter& open_object() { return open('{'); }
  JsonWriter& open_array() { return open('['); }
  JsonWriter& close_object() { return close('}'); }
  JsonWriter& close_array() { return close(']'); }

  // Starts a member of the current object; the next value written is its value.
  JsonWriter& key(std::string_view k) {
    separate();
    append_string(out_, k);
    out_ += ':';
    after_key_ = true;
    return *this;
  }

  JsonWriter& string(std::string_view v) {
    separate();
    append_string(out_, v);
    return *this;
  }
  JsonWriter& number(double v) {
    separate();
    append_number(out_, v);
    return *this;
  }
  JsonWriter& integer(std::uint64_t v) {
    separate();
    out_ += std::to_string(v);
    return *this;
  }
  JsonWriter& boolean(bool v) {
    separate();
    out_ += v ? "true" : "false";
    return *this;
  }
  JsonWriter& null() {
    separate();
    out_ += "null";
    return *this;
  }

  JsonWriter& member(std::string_view k, std::string_view v) { return key(k).string(v); }
  JsonWriter& member(std::string_view k, const char* v) { return key(k).string(v); }
  JsonWriter& member(std::string_view k, std::uint64_t v) { return key(k).integer(v); }
  JsonWriter& member(std::string_view k, bool v) { return key(k).boolean(v); }

 private:
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
  }
  JsonWriter& open(char c) {
    separate();
    out_ += c;
    first_.push_back(true);
    return *this;
  }
  JsonWriter& close(char c) {
    out_ += c;
    first_.pop_back();
    return *this;
  }

  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

void write_backends(JsonWriter& w, const pools::PoolCounts& b) {
  w.key("backends").open_object();
  w.member("connecting", std::uint64_t{b.connecting});
  w.member("idle", std::uint64_t{b.idle});
  w.member("active", std::uint64_t{b.active});
  w.close_object();
}

void write_server(JsonWriter& w, const ServerSnapshot& s, bool redacted) {
  const pools::ServerStats& a = s.admission;
  w.open_object();
  w.member("name", s.name);
  if (redacted) {
    w.key("host").null();
    w.key("port").null();
  } else {
    w.member("host", s.host);
    w.member("port", std::uint64_t{s.port});
  }
  w.member("capacity", std::uint64_t{a.capacity});
  w.member("in_use", std::uint64_t{a.in_use});
  w.member("shared", std::uint64_t{a.shared});
  w.member("borrowed", std::uint64_t{a.borrowed});
  w.member("waiters", std::uint64_t{a.waiters});
  w.member("breaker", pools::to_string(a.breaker));
  w.member("consecutive_connect_failures", std::uint64_t{a.consecutive_connect_failures});
  write_backends(w, s.backends);
  w.member("connect_attempts", s.connect_attempts);
  w.member("connect_failures", s.connect_failures);
  w.close_object();
}

void write_max_wait(JsonWriter& w, const BulkheadSnapshot& b) {
  w.key("max_wait_ms");
  w.integer(static_cast<std::uint64_t>(b.stats.max_wait.count()));
}

void write_bulkhead(JsonWriter& w, const BulkheadSnapshot& b) {
  const pools::BulkheadStats& s = b.stats;
  w.open_object();
  w.member("server", b.server);
  w.member("name", s.name);
  w.member("priority", std::uint64_t{s.priority});
  w.member("reserved", std::uint64_t{s.reserved});
  w.member("max", std::uint64_t{s.max});
  w.member("queue_depth", std::uint64_t{s.queue_depth});
  write_max_wait(w, b);
  w.member("in_use", std::uint64_t{s.in_use});
  w.member("borrowed", std::uint64_t{s.borrowed});
  w.member("waiters", std::uint64_t{s.waiters});
  w.key("oldest_wait_ms").number(s.oldest_wait ? to_ms(*s.oldest_wait) : 0.0);
  w.member("clients", std::uint64_t{s.clients});
  w.member("admitted", s.admitted);
  w.member("handed_off", s.handed_off);
  w.member("queued", s.queued);
  w.member("expired", s.expired);
  w.member("cancelled", s.cancelled);
  w.member("timeouts", s.timeouts);
  w.key("refused").open_object();
  for (std::size_t i = 0; i < pools::kRefusalReasonCount; ++i) {
    w.member(pools::to_string(static_cast<pools::RefusalReason>(i)), s.refused[i]);
  }
  w.close_object();
  w.member("refused_total", s.refused_total());
  w.key("mean_hold_ms");
  if (s.mean_hold) {
    w.number(s.mean_hold->count());
  } else {
    w.null();
  }
  w.member("lifo", s.lifo);
  w.member("retired", s.retired);
  w.close_object();
}

// One row of "pools": a (database, user) pool, or with `user` empty and `users` > 1 possible, the
// sum of a database's pools (redacted).
void write_pool(JsonWriter& w, const PoolSnapshot& p, std::uint64_t users, bool redacted) {
  w.open_object();
  w.member("database", p.database);
  if (redacted) {
    w.key("user").null();
  } else {
    w.member("user", p.user);
  }
  w.member("users", users);
  w.member("server", p.server);
  w.member("pool_mode", p.pool_mode);
  w.member("pool_size", std::uint64_t{p.pool_size});
  write_backends(w, p.backends);
  w.member("slots_in_use", std::uint64_t{p.slots_in_use});
  w.member("paused", p.paused);
  w.member("transactions", p.traffic.transactions);
  w.member("queries", p.traffic.queries);
  w.member("bytes_in", p.traffic.bytes_in);
  w.member("bytes_out", p.traffic.bytes_out);
  w.close_object();
}

// The pools of each (database, server) summed into one row, in the snapshot's order.
std::vector<std::pair<PoolSnapshot, std::uint64_t>> pools_by_database(const Snapshot& snapshot) {
  std::vector<std::pair<PoolSnapshot, std::uint64_t>> rows;
  std::map<std::pair<std::string, std::string>, std::size_t> index;
  for (const PoolSnapshot& p : snapshot.pools) {
    auto [it, added] = index.try_emplace({p.database, p.server}, rows.size());
    if (added) {
      rows.emplace_back(p, 1);
      rows.back().first.user.clear();
      continue;
    }
    auto& [sum, users] = rows[it->second];
    ++users;
    sum.pool_size = std::max(sum.pool_size, p.pool_size);
    sum.backends.connecting += p.backends.connecting;
    sum.backends.idle += p.backends.idle;
    sum.backends.active += p.backends.active;
    sum.slots_in_use += p.slots_in_use;
    sum.paused = sum.paused || p.paused;
    sum.traffic.transactions += p.traffic.transactions;
    sum.traffic.queries += p.traffic.queries;
    sum.traffic.bytes_in += p.traffic.bytes_in;
    sum.traffic.bytes_out += p.traffic.bytes_out;
  }
  return rows;
}

}  // namespace

std::string json_string(std::string_view text) {
  std::string out;
  append_string(out, text);
  return out;
}

std::string json_number(double value) {
  std::string out;
  append_number(out, value);
  return out;
}

std::string status_json(const Snapshot& snapshot, config::StatusDetail detail) {
  const bool redacted = detail != config::StatusDetail::Full;
  JsonWriter w;
  w.open_object();
  w.member("version", SLUICE_VERSION);
  w.key("time").number(std::chrono::duration<double>(snapshot.taken.time_since_epoch()).count());
  w.key("servers").open_array();
  for (const ServerSnapshot& s : snapshot.servers) write_server(w, s, redacted);
  w.close_array();
  w.key("bulkheads").open_array();
  for (const BulkheadSnapshot& b : snapshot.bulkheads) write_bulkhead(w, b);
  w.close_array();
  w.key("pools").open_array();
  if (redacted) {
    for (const auto& [p, users] : pools_by_database(snapshot)) write_pool(w, p, users, true);
  } else {
    for (const PoolSnapshot& p : snapshot.pools) write_pool(w, p, 1, false);
  }
  w.close_array();
  const ProcessSnapshot& proc = snapshot.process;
  w.key("clients").open_object();
  for (std::size_t i = 0; i < kClientStateCount; ++i) {
    w.member(to_string(static_cast<ClientState>(i)), std::uint64_t{proc.clients_by_state[i]});
  }
  w.member("accepted_total", proc.clients_accepted);
  w.close_object();
  w.member("protocol_errors", proc.protocol_errors);
  w.member("detail", redacted ? "redacted" : "full");
  w.close_object();
  return w.take();
}

}  // namespace sluice::http
