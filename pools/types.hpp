// Types shared by the pool cores: the clock they are given time points of, and opaque ids.
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice::pools {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using GroupId = std::uint32_t;
using LeaseId = std::uint64_t;
using TicketId = std::uint64_t;

}  // namespace sluice::pools
