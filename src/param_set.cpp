#include "src/param_set.hpp"

#include <mutex>
#include <unordered_map>
#include <utility>

namespace sluice {

// The sets in use by key. An entry's key views its set's own key string: a set leaves the table
// (its deleter erases the entry, under the mutex) before it is deleted, and intern() replaces an
// entry whose set is on its way out, so no entry ever outlives the string it views.
struct ParamSetTable::State {
  struct Entry {
    const ParamSet* set;
    std::weak_ptr<const ParamSet> weak;
  };
  mutable std::mutex mu;
  std::unordered_map<std::string_view, Entry> sets;
};

// The deleter of an interned set: takes it out of the table, unless a newer set with the same key
// has already taken its place there (intern() saw this one expired and replaced it).
struct ParamSetTable::Release {
  std::shared_ptr<State> state;

  void operator()(const ParamSet* set) const {
    {
      std::lock_guard lock(state->mu);
      const auto it = state->sets.find(set->key());
      if (it != state->sets.end() && it->second.set == set) state->sets.erase(it);
    }
    delete set;
  }
};

const ParamSetPtr& ParamSet::empty_set() {
  static const ParamSetPtr empty(new ParamSet({}, {}));
  return empty;
}

std::string ParamSet::key_of(const Params& params) {
  std::size_t size = 0;
  for (const auto& [name, value] : params) size += name.size() + value.size() + 2;
  std::string key;
  key.reserve(size);
  for (const auto& [name, value] : params) {
    key += name;
    key += '\0';
    key += value;
    key += '\0';
  }
  return key;
}

ParamSetTable::ParamSetTable() : state_(std::make_shared<State>()) {}

ParamSetTable::~ParamSetTable() = default;

ParamSetTable& ParamSetTable::process() {
  static ParamSetTable table;
  return table;
}

ParamSetPtr ParamSetTable::intern(Params params) {
  if (params.empty()) return ParamSet::empty_set();
  std::string key = ParamSet::key_of(params);
  {
    std::lock_guard lock(state_->mu);
    const auto it = state_->sets.find(key);
    if (it != state_->sets.end()) {
      if (ParamSetPtr in_use = it->second.weak.lock()) return in_use;
    }
  }
  // Built outside the lock. Declared before the lock below: when another thread has interned the
  // same list meanwhile, this one is dropped (its deleter locks) after the lock is released.
  ParamSetPtr fresh(new ParamSet(std::move(params), std::move(key)), Release{state_});
  std::lock_guard lock(state_->mu);
  auto [it, inserted] = state_->sets.try_emplace(fresh->key(), State::Entry{fresh.get(), fresh});
  if (!inserted) {
    if (ParamSetPtr in_use = it->second.weak.lock()) return in_use;
    // The set there is expiring (its deleter waits for the lock): this one takes its place.
    state_->sets.erase(it);
    state_->sets.emplace(fresh->key(), State::Entry{fresh.get(), fresh});
  }
  return fresh;
}

ParamSetPtr ParamSetTable::with(const ParamSetPtr& base, std::string_view name,
                                std::string_view value) {
  if (const std::string* current = base->find(name); current != nullptr && *current == value) {
    return base;
  }
  Params params = base->params();
  set_param(params, name, value);
  return intern(std::move(params));
}

std::size_t ParamSetTable::size() const {
  std::lock_guard lock(state_->mu);
  return state_->sets.size();
}

}  // namespace sluice
