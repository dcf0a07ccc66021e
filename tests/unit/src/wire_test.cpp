// ReadBuffer: unconsumed bytes survive growth and consumption; release_memory() really frees.
#include "src/wire.hpp"

#include <catch2/catch.hpp>

#include <cstring>
using sluice::kRelayChunk;
using sluice::ReadBuffer;

static void put(ReadBuffer& b, const char* s) {
  b.reserve_tail(std::strlen(s));
  auto t = b.tail();
  REQUIRE(t.size() >= std::strlen(s));
  std::memcpy(t.data(), s, std::strlen(s));
  b.commit(std::strlen(s));
}
static std::string str(const ReadBuffer& b) {
  return {reinterpret_cast<const char*>(b.view().data()), b.size()};
}

TEST_CASE("ReadBuffer keeps unconsumed bytes and releases its storage") {
  ReadBuffer b;
  CHECK(b.capacity() == 0);
  b.reserve_tail(512);
  CHECK(b.capacity() >= 512);
  put(b, "hello world");
  b.consume(6);
  CHECK(str(b) == "world");
  b.reserve_tail(b.capacity());  // forces growth with the bytes kept
  CHECK(str(b) == "world");
  CHECK(b.capacity() >= 5 + 512);
  b.release_memory();  // not empty: kept
  CHECK(str(b) == "world");
  b.consume(5);
  CHECK(b.empty());
  b.release_memory();
  CHECK(b.capacity() == 0);  // the login-phase buffer is really freed (was kept by `= {}`)
}

TEST_CASE("relay chunks are recycled through the free list") {
  ReadBuffer a, c;
  a.reserve_tail(kRelayChunk);
  CHECK(a.capacity() == kRelayChunk);
  const std::byte* pa = a.view().data();
  put(a, "x");
  a.consume(1);
  a.release_memory();
  CHECK(a.capacity() == 0);
  // A small buffer with nothing buffered swaps for the recycled chunk.
  c.reserve_tail(100);
  put(c, "ab");
  c.consume(2);
  c.reserve_tail(kRelayChunk);
  CHECK(c.capacity() == kRelayChunk);
  CHECK(c.view().data() == pa);
  // Memmove instead of a new allocation when room appears at the front.
  put(c, "0123456789");
  c.consume(8);
  c.reserve_tail(kRelayChunk - 4);
  CHECK(c.capacity() == kRelayChunk);
  CHECK(str(c) == "89");
  ReadBuffer moved(std::move(c));
  CHECK(str(moved) == "89");
  CHECK(c.capacity() == 0);
  CHECK(c.empty());
}
