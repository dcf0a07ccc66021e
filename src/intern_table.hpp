// InternTable: immutable objects shared by everyone who asks for an equal one (bench/PROFILE.md,
// M2). While an object is in use, every request for its key gets that same object; it leaves the
// table when its last holder lets go. Used for client parameter sets (src/param_set.*) and for
// prepared-statement bodies (src/statement_names.*), which many clients hold identical copies of.
//
// KeyOf(const T&) returns the object's key as a view into the object itself. Thread-safe; objects
// may outlive the table.
#pragma once

#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>

namespace sluice {

template <typename T, typename KeyOf>
class InternTable {
 public:
  InternTable() : state_(std::make_shared<State>()) {}

  // The object in use under `key`, or null.
  std::shared_ptr<const T> find(std::string_view key) const {
    std::lock_guard lock(state_->mu);
    const auto it = state_->objects.find(key);
    return it == state_->objects.end() ? nullptr : it->second.weak.lock();
  }

  // The object in use with `fresh`'s key if there is one (`fresh` is then dropped), else `fresh`,
  // now interned. Build `fresh` outside any lock: this takes the table's own.
  std::shared_ptr<const T> intern(std::unique_ptr<const T> fresh_object) {
    // Declared before the lock: when another thread interned an equal object meanwhile, this one
    // is dropped (its deleter locks) after the lock is released.
    std::shared_ptr<const T> fresh(fresh_object.release(), Release{state_});
    std::lock_guard lock(state_->mu);
    const std::string_view key = KeyOf{}(*fresh);
    auto [it, inserted] = state_->objects.try_emplace(key, Entry{fresh.get(), fresh});
    if (!inserted) {
      if (std::shared_ptr<const T> in_use = it->second.weak.lock()) return in_use;
      // The object there is expiring (its deleter waits for the lock): this one takes its place.
      state_->objects.erase(it);
      state_->objects.emplace(key, Entry{fresh.get(), fresh});
    }
    return fresh;
  }

  // Distinct objects in use.
  std::size_t size() const {
    std::lock_guard lock(state_->mu);
    return state_->objects.size();
  }

 private:
  // An entry's key views its object: an object leaves the table (its deleter erases the entry,
  // under the mutex) before it is deleted, and intern() replaces an entry whose object is on its
  // way out, so no entry ever outlives the bytes it views.
  struct Entry {
    const T* object;
    std::weak_ptr<const T> weak;
  };
  struct State {
    mutable std::mutex mu;
    std::unordered_map<std::string_view, Entry> objects;
  };
  // The deleter of an interned object: takes it out of the table, unless a newer object with the
  // same key has already taken its place there.
  struct Release {
    std::shared_ptr<State> state;
    void operator()(const T* object) const {
      {
        std::lock_guard lock(state->mu);
        const auto it = state->objects.find(KeyOf{}(*object));
        if (it != state->objects.end() && it->second.object == object) state->objects.erase(it);
      }
      delete object;
    }
  };
  std::shared_ptr<State> state_;
};

}  // namespace sluice
