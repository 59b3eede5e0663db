// parallel_for over an index range with a bounded number of worker threads.
//
// Work items are claimed in order from a shared counter, so long items do not stall the
// others. try_parallel_for stops handing out work after the first error and returns the
// error of the lowest failing index among those run (deterministic for one failure).
// Exceptions never escape a worker thread (which would std::terminate the process):
// try_parallel_for turns one (std::bad_alloc included) into an Errc::internal error of its
// item; parallel_for stops handing out work and rethrows the first on the caller's thread.
#pragma once

#include <cstddef>
#include <functional>

#include "core/error.hpp"

namespace mup {

// Worker count: MUP_THREADS if set, else the hardware's, at least 1.
unsigned default_threads();

void parallel_for(size_t n, unsigned threads, const std::function<void(size_t)>& fn);
[[nodiscard]] Status try_parallel_for(size_t n, unsigned threads,
                                      const std::function<Status(size_t)>& fn);

}  // namespace mup
