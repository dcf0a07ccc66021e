// pools::IdMap against std::unordered_map: random inserts, overwrites and erases (long probe runs
// that wrap around the end of the array included), then every lookup and the iteration agree.
#include "pools/id_map.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <unordered_map>
#include <vector>

namespace {

using sluice::pools::IdMap;

void require_same(const IdMap<std::uint64_t>& m,
                  const std::unordered_map<std::uint64_t, std::uint64_t>& ref,
                  std::uint64_t max_id) {
  REQUIRE(m.size() == ref.size());
  REQUIRE(m.empty() == ref.empty());
  for (std::uint64_t id = 0; id <= max_id; ++id) {
    auto it = ref.find(id);
    const std::uint64_t* v = m.find(id);
    if (it == ref.end()) {
      REQUIRE(v == nullptr);
      REQUIRE_FALSE(m.contains(id));
    } else {
      REQUIRE(v != nullptr);
      REQUIRE(*v == it->second);
    }
  }
  std::map<std::uint64_t, std::uint64_t> seen;
  m.for_each([&](std::uint64_t id, std::uint64_t v) { REQUIRE(seen.emplace(id, v).second); });
  REQUIRE(seen.size() == ref.size());
  for (const auto& [id, v] : seen) REQUIRE(ref.at(id) == v);
}

}  // namespace

TEST_CASE("IdMap agrees with unordered_map under random inserts and erases", "[pools]") {
  for (unsigned seed = 1; seed <= 40; ++seed) {
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    // Small id ranges make long probe runs and many collisions; large ones spread out.
    const std::uint64_t max_id = seed % 2 == 0 ? 64 : 5000;
    IdMap<std::uint64_t> m;
    std::unordered_map<std::uint64_t, std::uint64_t> ref;
    for (int step = 0; step < 3000; ++step) {
      const std::uint64_t id = 1 + rng() % max_id;
      const std::uint64_t value = rng();
      switch (rng() % 3) {
        case 0:
        case 1:
          m.insert(id, value);
          ref[id] = value;
          break;
        default:
          REQUIRE(m.erase(id) == (ref.erase(id) == 1));
          break;
      }
      if (step % 500 == 0) require_same(m, ref, max_id + 1);
    }
    require_same(m, ref, max_id + 1);
    // Drain completely: every erase keeps the rest findable.
    std::vector<std::uint64_t> ids;
    for (const auto& [id, v] : ref) ids.push_back(id);
    std::shuffle(ids.begin(), ids.end(), rng);
    for (std::uint64_t id : ids) {
      REQUIRE(m.erase(id));
      ref.erase(id);
      REQUIRE(m.size() == ref.size());
      for (const auto& [other, v] : ref) REQUIRE(m.find(other) != nullptr);
    }
    REQUIRE(m.empty());
    REQUIRE_FALSE(m.erase(1));
  }
}

TEST_CASE("IdMap: id 0 is never a key, and sequential ids like leases work", "[pools]") {
  IdMap<int> m;
  REQUIRE(m.find(0) == nullptr);
  REQUIRE_FALSE(m.erase(0));
  // The lease pattern: ids only grow; a window of live ones slides forward.
  for (std::uint64_t id = 1; id <= 100000; ++id) {
    m.insert(id, static_cast<int>(id % 1000));
    if (id > 20) REQUIRE(m.erase(id - 20));
    REQUIRE(m.size() == std::min<std::uint64_t>(id, 20));
  }
  for (std::uint64_t id = 99981; id <= 100000; ++id) REQUIRE(*m.find(id) == int(id % 1000));
  REQUIRE(m.find(99980) == nullptr);
}
