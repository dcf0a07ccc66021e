// Small socket helpers shared by client sessions and backend connections: a read buffer that
// keeps unconsumed bytes at its front, whole-message reads for the startup and authentication
// phases (where messages are small and every one is inspected), and whole-buffer writes.
// Each object is owned by one connection and used from that connection's executor only.
#pragma once

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"
#include "src/asio_prelude.hpp"

#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace sluice {

// The relay's read size; buffers of this size are recycled per thread.
inline constexpr std::size_t kRelayChunk = 32 * 1024;

// Free room to make for the rest of a message of `message_size` bytes of which `buffered` are in
// the buffer: at most as much again as has arrived (at least a chunk), so a peer that declares a
// large message but sends little of it makes Sluice hold little (twice what it sent at most).
constexpr std::size_t room_for_rest(std::size_t message_size, std::size_t buffered) {
  if (message_size <= buffered) return 0;
  const std::size_t rest = message_size - buffered;
  const std::size_t step = buffered > kRelayChunk ? buffered : kRelayChunk;
  return rest < step ? rest : step;
}

class ReadBuffer {
 public:
  // `capacity` bytes are allocated up front (uninitialised: the bytes are only ever written by
  // reads before they are looked at).
  explicit ReadBuffer(std::size_t capacity = 0);
  ReadBuffer(ReadBuffer&& o) noexcept
      : data_(std::move(o.data_)),
        capacity_(std::exchange(o.capacity_, 0)),
        begin_(std::exchange(o.begin_, 0)),
        end_(std::exchange(o.end_, 0)) {}
  ReadBuffer& operator=(ReadBuffer&& o) noexcept;
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;
  ~ReadBuffer() = default;  // frees; only release_memory() recycles (the free list is per thread)

  protocol::ByteView view() const { return {data_.get() + begin_, end_ - begin_}; }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  // Makes room for at least `n` more bytes after the unconsumed ones (moves them to the front).
  void reserve_tail(std::size_t n) {
    if (capacity_ - end_ < n) grow(n);
  }
  asio::mutable_buffer tail() { return asio::buffer(data_.get() + end_, capacity_ - end_); }
  void commit(std::size_t n) { end_ += n; }
  std::size_t capacity() const { return capacity_; }
  // Gives the storage back when nothing is buffered (an idle client costs no buffer). Storage of
  // the common size goes to a small per-thread free list, so a busy session does not allocate
  // 32 kB on every transaction.
  void release_memory();

 private:
  void grow(std::size_t n);

  // Not a std::vector: resizing one zero-fills every new byte (32 kB per relay buffer), and
  // `vector = {}` keeps the capacity instead of freeing it.
  std::unique_ptr<std::byte[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

// Reads until `buf` holds at least `want` unconsumed bytes. Returns false on EOF or error (`ec`).
awaitable<bool> read_at_least(Socket& s, ReadBuffer& buf, std::size_t want, error_code& ec);

// Reads one whole typed message (header and body) into `buf`; on success returns its size (the
// message is buf.view().first(size)). On a framing error returns nullopt with `err` set; on EOF or
// an I/O error returns nullopt with `ec` set.
awaitable<std::optional<std::size_t>> read_message(Socket& s, ReadBuffer& buf,
                                                   protocol::Direction dir,
                                                   std::uint32_t max_length,
                                                   protocol::FrameError& err, error_code& ec);

awaitable<bool> write_all(Socket& s, const protocol::Buffer& out, error_code& ec);

// The peer's TCP endpoint (address and port); none for a Unix-socket peer or on error.
std::optional<asio::ip::tcp::endpoint> tcp_peer(const Socket& s);

// Immediate, non-blocking attempts for the relay's common cases, without an Asio operation (no
// allocation, no completion posted through the scheduler, no coroutine resumption): on loopback
// a send almost always completes at once, and a read right after `async_wait(wait_read)` finds
// its bytes. Each returns the bytes moved; 0 with `ec == asio::error::would_block` means "not
// now" (use the asynchronous operation, which then waits for readiness); any other `ec` is an
// error (`eof` for a read of a closed connection). The first call puts the socket in
// non-blocking mode (one ioctl per socket; Asio's own asynchronous operations do not mind).
// send_now writes at most 64 buffers of the list (a partial send; see drop_front).
std::size_t send_now(Socket& s, const std::vector<asio::const_buffer>& buffers, error_code& ec);
std::size_t send_now(Socket& s, asio::const_buffer buffer, error_code& ec);
// Reads into buf.tail() (reserve_tail() first: an empty tail reads nothing and reports no error)
// and commits what it read.
std::size_t receive_now(Socket& s, ReadBuffer& buf, error_code& ec);
// Removes the first `n` bytes from a gather list (what a partial send_now already wrote).
void drop_front(std::vector<asio::const_buffer>& buffers, std::size_t n);

// Closes a socket if a deadline passes first. The timer's handler holds only a shared flag, so it
// is safe whichever of the two (I/O or timer) finishes first.
class Deadline {
 public:
  Deadline(const asio::any_io_executor& ex, Socket& socket, std::chrono::milliseconds timeout)
      : timer_(ex), state_(std::make_shared<State>(State{&socket, false})) {
    if (timeout.count() <= 0) return;  // "0" disables a timeout in Sluice's config
    timer_.expires_after(timeout);
    timer_.async_wait([state = state_](error_code ec) {
      if (ec || state->socket == nullptr) return;
      state->fired = true;
      error_code ignored;
      state->socket->close(ignored);
    });
  }
  ~Deadline() {
    state_->socket = nullptr;
    timer_.cancel();
  }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  bool fired() const { return state_->fired; }

 private:
  struct State {
    Socket* socket;
    bool fired;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// Sets TCP_NODELAY when the socket is TCP (ignored for Unix-domain sockets).
void set_nodelay(Socket& s);

}  // namespace sluice
