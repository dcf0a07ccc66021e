// ParamSet and ParamSetTable: interned parameter lists keep the key format, are shared while in
// use, leave the table with their last holder, and stay consistent under concurrent use.
#include "src/param_set.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

using sluice::Params;
using sluice::ParamSet;
using sluice::ParamSetPtr;
using sluice::ParamSetTable;

namespace {

Params sample() {
  return {{"DateStyle", "ISO, MDY"}, {"TimeZone", "UTC"}, {"application_name", "app"}};
}

}  // namespace

TEST_CASE("a parameter set's key is name NUL value NUL per pair, in order") {
  using namespace std::string_literals;
  CHECK(ParamSet::key_of({}).empty());
  CHECK(ParamSet::key_of(sample()) ==
        "DateStyle\0ISO, MDY\0TimeZone\0UTC\0application_name\0app\0"s);
  // Names and values may hold '=', and names are kept as spelled: the key tells lists apart.
  CHECK(ParamSet::key_of({{"a", "b=c"}}) != ParamSet::key_of({{"a=b", "c"}}));
  CHECK(ParamSet::key_of({{"TimeZone", "UTC"}}) != ParamSet::key_of({{"timezone", "UTC"}}));
}

TEST_CASE("equal lists share one set while it is in use, and it leaves with its last holder") {
  ParamSetTable table;
  ParamSetPtr a = table.intern(sample());
  ParamSetPtr b = table.intern(sample());
  CHECK(a == b);
  CHECK(a->key() == ParamSet::key_of(sample()));
  CHECK(a->params() == sample());
  CHECK(table.size() == 1);
  CHECK(sizeof(ParamSetPtr) == 16);  // what a session holds

  Params reordered = sample();
  std::swap(reordered[0], reordered[1]);
  ParamSetPtr c = table.intern(reordered);
  CHECK(c != a);  // order is part of the list (and of the key)
  CHECK(table.size() == 2);

  a.reset();
  CHECK(table.size() == 2);  // b still uses it
  b.reset();
  CHECK(table.size() == 1);
  c.reset();
  CHECK(table.size() == 0);

  // Interned again after it left: a new set, equal to the old one.
  ParamSetPtr d = table.intern(sample());
  CHECK(d->params() == sample());
  CHECK(table.size() == 1);
}

TEST_CASE("the empty list is one shared set outside the table") {
  ParamSetTable table;
  ParamSetPtr e = table.intern({});
  CHECK(e == ParamSet::empty_set());
  CHECK(e->empty());
  CHECK(e->key().empty());  // as an empty params key was: never equal to a synced key
  CHECK(table.size() == 0);
}

TEST_CASE("with() sets one parameter as set_param does and interns the result") {
  ParamSetTable table;
  const ParamSetPtr base = table.intern(sample());

  // Unchanged value: the same set.
  CHECK(table.with(base, "TimeZone", "UTC") == base);
  CHECK(table.with(base, "timezone", "UTC") == base);  // names compare case-insensitively

  // A new value replaces the old one in place, under the name as first spelled.
  const ParamSetPtr changed = table.with(base, "timezone", "Europe/Paris");
  CHECK(changed != base);
  CHECK(changed->params() == Params{{"DateStyle", "ISO, MDY"},
                                    {"TimeZone", "Europe/Paris"},
                                    {"application_name", "app"}});
  CHECK(base->params() == sample());  // sets never change
  CHECK(*changed->find("TIMEZONE") == "Europe/Paris");

  // A new name is appended.
  const ParamSetPtr added = table.with(base, "search_path", "x");
  CHECK(added->params().back() == std::pair<std::string, std::string>{"search_path", "x"});
  CHECK(added->size() == base->size() + 1);

  // The result is the interned set for its list.
  Params expected = sample();
  sluice::set_param(expected, "timezone", "Europe/Paris");
  CHECK(table.intern(expected) == changed);
  CHECK(table.with(ParamSet::empty_set(), "a", "b") == table.intern({{"a", "b"}}));
  CHECK(base->find("search_path") == nullptr);
}

TEST_CASE("sets outlive their table") {
  ParamSetPtr kept;
  {
    ParamSetTable table;
    kept = table.intern(sample());
  }
  CHECK(kept->params() == sample());
  kept.reset();  // its deleter still finds the table's state
}

TEST_CASE("concurrent interning and release keep one set per list in use") {
  ParamSetTable table;
  // A few distinct lists, so that threads keep interning, sharing and dropping the same ones.
  std::vector<Params> lists;
  for (int i = 0; i < 4; ++i) {
    Params p = sample();
    p.emplace_back("statement_timeout", std::to_string(i));
    lists.push_back(std::move(p));
  }
  // Held for the whole test: while a set is held, every intern of its list must return it.
  std::vector<ParamSetPtr> pinned = {table.intern(lists[0]), table.intern(lists[1])};
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<ParamSetPtr> held(8);
      for (int i = 0; i < 20000; ++i) {
        const std::size_t which = rng() % lists.size();
        ParamSetPtr p = (rng() % 2 == 0)
                            ? table.intern(lists[which])
                            : table.with(table.intern(lists[(which + 1) % lists.size()]),
                                         "statement_timeout", std::to_string(which));
        if (p->params() != lists[which]) ++mismatches;
        if (which < pinned.size() && p != pinned[which]) ++mismatches;
        held[rng() % held.size()] = std::move(p);  // drops whatever was held there
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches == 0);
  CHECK(table.size() == 2);  // only the pinned sets remain
  pinned.clear();
  CHECK(table.size() == 0);
}
