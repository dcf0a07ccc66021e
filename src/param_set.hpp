// ParamSet: the parameter settings a client expects (name, value pairs in the order they were
// settled) and their key, the same list as one string, immutable and shared by every session that
// expects exactly these settings (bench/PROFILE.md, M2). Almost every client of a pool expects the
// same ones, so a session holds a 16-byte pointer instead of its own list and key.
//
// ParamSetTable interns them: while a set is in use, every request for an equal list (the same
// key) gets that same object, so two sets in use are equal exactly when they are the same
// pointer. A set leaves the table when its last holder lets go. Thread-safe; one table per process
// (process()) serves every pool: a client's parameters are known before its pool is.
#pragma once

#include "src/backend.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace sluice {

class ParamSet {
 public:
  ParamSet(const ParamSet&) = delete;
  ParamSet& operator=(const ParamSet&) = delete;

  // The shared empty set (key ""); ParamSetTable::intern() of an empty list returns it.
  static const std::shared_ptr<const ParamSet>& empty_set();
  // The key of a list: name NUL value NUL for each pair, in order. Names and values never hold a
  // NUL (they come from the protocol's C strings), so equal keys mean equal lists. (The session's
  // params key used '=' after the name, which let {"a", "b=c"} and {"a=b", "c"} collide.)
  static std::string key_of(const Params& params);

  const Params& params() const { return params_; }
  const std::string& key() const { return key_; }
  Params::const_iterator begin() const { return params_.begin(); }
  Params::const_iterator end() const { return params_.end(); }
  std::size_t size() const { return params_.size(); }
  bool empty() const { return params_.empty(); }
  // The value of `name` (case-insensitive, as find_param), or null.
  const std::string* find(std::string_view name) const { return find_param(params_, name); }

 private:
  friend class ParamSetTable;
  ParamSet(Params params, std::string key) : params_(std::move(params)), key_(std::move(key)) {}

  const Params params_;
  const std::string key_;
};

using ParamSetPtr = std::shared_ptr<const ParamSet>;

class ParamSetTable {
 public:
  ParamSetTable();
  ~ParamSetTable();
  ParamSetTable(const ParamSetTable&) = delete;
  ParamSetTable& operator=(const ParamSetTable&) = delete;

  // The table every session uses.
  static ParamSetTable& process();

  // The set equal to `params`: the one in use if there is one, else a new one.
  ParamSetPtr intern(Params params);
  // `base` with `name` set to `value` as set_param() does (the value replaced where the name is,
  // case-insensitively, else the pair appended); `base` itself when it already has that value.
  ParamSetPtr with(const ParamSetPtr& base, std::string_view name, std::string_view value);
  // Distinct non-empty sets in use.
  std::size_t size() const;

 private:
  struct State;  // an InternTable (src/intern_table.hpp): sets may outlive the table
  std::unique_ptr<State> state_;
};

}  // namespace sluice
