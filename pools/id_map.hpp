// IdMap: a map from nonzero 64-bit ids to small values, in one flat array (open addressing,
// linear probing, backward-shift deletion). An insert or erase allocates nothing once the array
// has grown to the largest number of entries held at once; the array never shrinks.
//
// For the pool cores' short-lived records (a lease per transaction): std::unordered_map would
// allocate a node per insert and free it per erase. Id 0 marks an empty slot and is not a valid
// key. Pure, single-threaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sluice::pools {

template <typename V>
class IdMap {
 public:
  struct Slot {
    std::uint64_t id = 0;  // 0: empty
    V value{};
  };

  IdMap() = default;

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool contains(std::uint64_t id) const { return find(id) != nullptr; }

  V* find(std::uint64_t id) { return const_cast<V*>(static_cast<const IdMap*>(this)->find(id)); }
  const V* find(std::uint64_t id) const {
    if (id == 0 || size_ == 0) return nullptr;
    for (std::size_t i = home(id);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id == id) return &s.value;
      if (s.id == 0) return nullptr;
    }
  }

  // Inserts or overwrites. `id` must not be 0.
  void insert(std::uint64_t id, V value) {
    if (V* v = find(id)) {
      *v = std::move(value);
      return;
    }
    if ((size_ + 1) * 2 > slots_.size()) grow();
    std::size_t i = home(id);
    while (slots_[i].id != 0) i = (i + 1) & mask_;
    slots_[i].id = id;
    slots_[i].value = std::move(value);
    ++size_;
  }

  // Removes `id`; false if it is not there.
  bool erase(std::uint64_t id) {
    if (id == 0 || size_ == 0) return false;
    std::size_t i = home(id);
    while (slots_[i].id != id) {
      if (slots_[i].id == 0) return false;
      i = (i + 1) & mask_;
    }
    // Backward shift: move later members of the probe run into the hole when their home slot
    // does not lie cyclically in (hole, their slot], so that every lookup still finds them.
    for (std::size_t j = (i + 1) & mask_; slots_[j].id != 0; j = (j + 1) & mask_) {
      const std::size_t h = home(slots_[j].id);
      const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
      if (stays) continue;
      slots_[i] = std::move(slots_[j]);
      i = j;
    }
    slots_[i] = Slot{};
    --size_;
    return true;
  }

  // Calls f(id, value) for every entry, in no particular order.
  template <typename F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.id != 0) f(s.id, s.value);
    }
  }

 private:
  std::size_t home(std::uint64_t id) const {
    // Fibonacci hashing: consecutive ids spread over the table.
    return static_cast<std::size_t>((id * 0x9E3779B97F4A7C15ull) >> shift_);
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    const std::size_t capacity = old.empty() ? 16 : old.size() * 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
    size_ = 0;
    for (Slot& s : old) {
      if (s.id == 0) continue;
      std::size_t i = home(s.id);
      while (slots_[i].id != 0) i = (i + 1) & mask_;
      slots_[i] = std::move(s);
      ++size_;
    }
  }

  std::vector<Slot> slots_;
  std::size_t size_ = 0;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
};

}  // namespace sluice::pools
