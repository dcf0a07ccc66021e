#include "src/wire.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

namespace sluice {

namespace {
// Recycled relay buffers of this thread (sessions are pinned to a thread).
thread_local std::vector<std::vector<std::byte>> free_chunks;
constexpr std::size_t kMaxFreeChunks = 64;
}  // namespace

void ReadBuffer::release_memory() {
  if (!empty() || data_.empty()) return;
  if (data_.size() == kRelayChunk && free_chunks.size() < kMaxFreeChunks) {
    free_chunks.push_back(std::move(data_));
  }
  data_ = {};
  begin_ = end_ = 0;
}

void ReadBuffer::reserve_tail(std::size_t n) {
  if (data_.size() - end_ >= n) return;
  if (data_.empty() && n <= kRelayChunk && !free_chunks.empty()) {
    data_ = std::move(free_chunks.back());
    free_chunks.pop_back();
    begin_ = end_ = 0;
    return;
  }
  if (begin_ > 0) {
    std::memmove(data_.data(), data_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (data_.size() - end_ < n) data_.resize(end_ + n);
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

void set_nodelay(Socket& s) {
  int one = 1;
  // Fails harmlessly (ENOTSUP/EOPNOTSUPP) on Unix-domain sockets.
  (void)::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace sluice
