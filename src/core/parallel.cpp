#include "core/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace mup {

unsigned default_threads() {
  if (const char* t = std::getenv("MUP_THREADS")) {
    long v = std::atol(t);
    if (v > 0) return static_cast<unsigned>(v);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

void parallel_for(size_t n, unsigned threads, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr thrown;  // the first exception of any worker, rethrown on the caller
  auto worker = [&] {
    try {
      for (size_t i = next++; i < n; i = next++) fn(i);
    } catch (...) {
      next = n;  // the others stop at their next item
      std::lock_guard lock(mu);
      if (!thrown) thrown = std::current_exception();
    }
  };
  size_t t = std::min<size_t>(std::max(1u, threads), n);
  if (t > 1) {
    std::vector<std::thread> pool;
    for (size_t k = 1; k < t; ++k) pool.emplace_back(worker);
    worker();
    for (auto& th : pool) th.join();
  } else {
    worker();
  }
  if (thrown) std::rethrow_exception(thrown);
}

Status try_parallel_for(size_t n, unsigned threads, const std::function<Status(size_t)>& fn) {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::optional<std::pair<size_t, Error>> first;
  parallel_for(n, threads, [&](size_t i) {
    if (stop.load(std::memory_order_relaxed)) return;
    Status s;
    // A worker's exception (std::bad_alloc above all) is an error of the operation,
    // never std::terminate.
    try {
      s = fn(i);
    } catch (const std::bad_alloc&) {
      s = fail(Errc::internal, "out of memory in a worker thread (item " + std::to_string(i) +
                                   "); nothing was kept from it");
    } catch (const std::exception& e) {
      s = fail(Errc::internal,
               "a worker thread failed (item " + std::to_string(i) + "): " + e.what());
    }
    if (!s) {
      stop = true;
      std::lock_guard lock(mu);
      if (!first || i < first->first) first.emplace(i, s.error());
    }
  });
  if (first) return tl::unexpected<Error>(first->second);
  return {};
}

}  // namespace mup
