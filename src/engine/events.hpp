// Events of running operations, delivered to an observer off the caller's threads.
//
// emit() never blocks on the observer: events go to a queue that one delivery thread
// drains, so a slow observer (a terminal, an API client) never stalls a download worker.
// Progress events of the same phase coalesce while they wait (the newest wins); other
// events are delivered in order, all of them. flush() waits until everything emitted so
// far was delivered (an operation calls it before it returns). Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

namespace mup::engine {

class EventBus {
 public:
  using Observer = std::function<void(const nlohmann::json&)>;
  explicit EventBus(Observer observer);
  ~EventBus();  // delivers what is queued, then stops
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  void emit(nlohmann::json event);
  void flush();
  uint64_t coalesced() const;  // progress events replaced by newer ones (for tests)

 private:
  void run();

  Observer observer_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<nlohmann::json> queue_;
  bool stop_ = false, busy_ = false;
  uint64_t coalesced_ = 0;
  std::thread thread_;
};

}  // namespace mup::engine
