#include "src/wire.hpp"

#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>

namespace sluice {

namespace {

// Recycled relay buffers (kRelayChunk bytes each) of this thread: sessions are pinned to a
// thread, and a backend used from another thread returns its buffer to that thread's list.
struct FreeChunks {
  static constexpr std::size_t kMax = 64;
  std::unique_ptr<std::byte[]> chunks[kMax];
  std::size_t count = 0;
};
thread_local FreeChunks free_chunks;

}  // namespace

ReadBuffer::ReadBuffer(std::size_t capacity)
    : data_(capacity > 0 ? new std::byte[capacity] : nullptr), capacity_(capacity) {}

ReadBuffer& ReadBuffer::operator=(ReadBuffer&& o) noexcept {
  if (this != &o) {
    data_ = std::move(o.data_);
    capacity_ = std::exchange(o.capacity_, 0);
    begin_ = std::exchange(o.begin_, 0);
    end_ = std::exchange(o.end_, 0);
  }
  return *this;
}

void ReadBuffer::release_memory() {
  if (!empty() || capacity_ == 0) return;
  if (capacity_ == kRelayChunk && free_chunks.count < FreeChunks::kMax) {
    free_chunks.chunks[free_chunks.count++] = std::move(data_);
  }
  data_.reset();
  capacity_ = 0;
  begin_ = end_ = 0;
}

void ReadBuffer::grow(std::size_t n) {
  if (empty() && capacity_ < kRelayChunk && n <= kRelayChunk && free_chunks.count > 0) {
    // Nothing buffered: swap a small (login-phase) buffer, or none, for a recycled chunk.
    data_ = std::move(free_chunks.chunks[--free_chunks.count]);
    capacity_ = kRelayChunk;
    begin_ = end_ = 0;
    return;
  }
  const std::size_t used = end_ - begin_;
  if (capacity_ - used >= n) {
    // Enough room once the unconsumed bytes move to the front.
    if (used > 0) std::memmove(data_.get(), data_.get() + begin_, used);
  } else {
    const std::size_t cap = used + n;
    auto bigger = std::unique_ptr<std::byte[]>(new std::byte[cap]);
    if (used > 0) std::memcpy(bigger.get(), data_.get() + begin_, used);
    data_ = std::move(bigger);
    capacity_ = cap;
  }
  begin_ = 0;
  end_ = used;
}

awaitable<bool> read_at_least(Socket& s, ReadBuffer& buf, std::size_t want, error_code& ec) {
  while (buf.size() < want) {
    buf.reserve_tail(std::max<std::size_t>(want - buf.size(), 512));
    std::size_t n = co_await s.async_read_some(buf.tail(), ec_token(ec));
    if (ec) co_return false;
    buf.commit(n);
  }
  co_return true;
}

awaitable<std::optional<std::size_t>> read_message(Socket& s, ReadBuffer& buf,
                                                   protocol::Direction dir,
                                                   std::uint32_t max_length,
                                                   protocol::FrameError& err, error_code& ec) {
  for (;;) {
    auto r = protocol::peek_frame(buf.view(), dir, max_length);
    if (r.status == protocol::DecodeStatus::Error) {
      err = r.error;
      co_return std::nullopt;
    }
    std::size_t want = r.status == protocol::DecodeStatus::Ok ? r.frame.size() : 5;
    if (r.status == protocol::DecodeStatus::Ok && buf.size() >= want) co_return want;
    if (!co_await read_at_least(s, buf, want, ec)) co_return std::nullopt;
  }
}

awaitable<bool> write_all(Socket& s, const protocol::Buffer& out, error_code& ec) {
  co_await asio::async_write(s, asio::buffer(out), ec_token(ec));
  co_return !ec;
}

namespace {

bool make_non_blocking(Socket& s, error_code& ec) {
  if (!s.non_blocking()) s.non_blocking(true, ec);
  return !ec;
}

}  // namespace

std::size_t send_now(Socket& s, const std::vector<asio::const_buffer>& buffers, error_code& ec) {
  if (!make_non_blocking(s, ec)) return 0;
  return s.send(buffers, 0, ec);
}

std::size_t send_now(Socket& s, asio::const_buffer buffer, error_code& ec) {
  if (!make_non_blocking(s, ec)) return 0;
  return s.send(buffer, 0, ec);
}

std::size_t receive_now(Socket& s, ReadBuffer& buf, error_code& ec) {
  if (!make_non_blocking(s, ec)) return 0;
  const std::size_t n = s.receive(buf.tail(), 0, ec);
  if (!ec) buf.commit(n);
  return ec ? 0 : n;
}

void drop_front(std::vector<asio::const_buffer>& buffers, std::size_t n) {
  std::size_t i = 0;
  while (i < buffers.size() && n >= buffers[i].size()) {
    n -= buffers[i].size();
    ++i;
  }
  buffers.erase(buffers.begin(), buffers.begin() + static_cast<std::ptrdiff_t>(i));
  if (n > 0 && !buffers.empty()) buffers.front() += n;
}

void set_nodelay(Socket& s) {
  int one = 1;
  // Fails harmlessly (ENOTSUP/EOPNOTSUPP) on Unix-domain sockets.
  (void)::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::optional<asio::ip::tcp::endpoint> tcp_peer(const Socket& s) {
  error_code ec;
  Endpoint ep = s.remote_endpoint(ec);
  if (ec) return std::nullopt;
  if (ep.protocol().family() != AF_INET && ep.protocol().family() != AF_INET6) return std::nullopt;
  asio::ip::tcp::endpoint tcp;
  tcp.resize(ep.size());
  std::memcpy(tcp.data(), ep.data(), ep.size());
  return tcp;
}

}  // namespace sluice
