#include "src/param_set.hpp"

#include "src/intern_table.hpp"

#include <utility>

namespace sluice {

struct ParamSetTable::State {
  struct KeyOf {
    std::string_view operator()(const ParamSet& set) const { return set.key(); }
  };
  InternTable<ParamSet, KeyOf> sets;
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

ParamSetTable::ParamSetTable() : state_(std::make_unique<State>()) {}

ParamSetTable::~ParamSetTable() = default;

ParamSetTable& ParamSetTable::process() {
  static ParamSetTable table;
  return table;
}

ParamSetPtr ParamSetTable::intern(Params params) {
  if (params.empty()) return ParamSet::empty_set();
  std::string key = ParamSet::key_of(params);
  if (ParamSetPtr in_use = state_->sets.find(key)) return in_use;
  return state_->sets.intern(
      std::unique_ptr<const ParamSet>(new ParamSet(std::move(params), std::move(key))));
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

std::size_t ParamSetTable::size() const { return state_->sets.size(); }

}  // namespace sluice
