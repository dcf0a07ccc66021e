#include "pools/token_bucket.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sluice::pools {

TokenBucket::TokenBucket(RateLimit limit) : limit_(limit) { derive_intervals(); }

void TokenBucket::derive_intervals() {
  if (!limit_.enabled()) {
    interval_ = tolerance_ = std::chrono::nanoseconds{0};
    return;
  }
  const double ns = std::round(1e9 / limit_.per_second);
  interval_ = std::chrono::nanoseconds{std::max<std::int64_t>(1, static_cast<std::int64_t>(ns))};
  const std::uint32_t burst = std::max<std::uint32_t>(1, limit_.burst);
  tolerance_ = interval_ * (burst - 1);
}

bool TokenBucket::try_take(TimePoint now) {
  if (!limit_.enabled()) return true;
  if (now < tat_ - tolerance_) return false;
  tat_ = std::max(tat_, now) + interval_;
  return true;
}

std::chrono::nanoseconds TokenBucket::time_to_next(TimePoint now) const {
  if (!limit_.enabled()) return std::chrono::nanoseconds{0};
  const TimePoint conforming_at = tat_ - tolerance_;
  return conforming_at > now ? conforming_at - now : std::chrono::nanoseconds{0};
}

std::uint32_t TokenBucket::available(TimePoint now) const {
  if (!limit_.enabled()) return std::numeric_limits<std::uint32_t>::max();
  const TimePoint start = std::max(tat_, now);
  const auto room = now + tolerance_ - start;
  if (room < std::chrono::nanoseconds{0}) return 0;
  return static_cast<std::uint32_t>(room / interval_) + 1;
}

void TokenBucket::reconfigure(RateLimit limit, TimePoint now) {
  const bool was_enabled = limit_.enabled();
  limit_ = limit;
  derive_intervals();
  if (!limit_.enabled()) return;
  if (!was_enabled) {
    tat_ = TimePoint{};  // a limit switched on starts full
    return;
  }
  // Empty under the new limit means TAT = now + tolerance + interval; never emptier than that.
  tat_ = std::min(tat_, now + tolerance_ + interval_);
}

}  // namespace sluice::pools
