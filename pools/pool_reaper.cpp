#include "pools/pool_reaper.hpp"

namespace sluice::pools {

bool reap_pool_now(const PoolUse& use, TimePoint now, Duration idle_timeout) {
  if (idle_timeout.count() <= 0 || use.configured) return false;
  if (use.clients != 0 || use.backends.total() != 0) return false;
  return now >= use.last_used && now - use.last_used >= idle_timeout;
}

}  // namespace sluice::pools
