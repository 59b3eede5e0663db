#include "engine/events.hpp"

namespace mup::engine {

EventBus::EventBus(Observer observer) : observer_(std::move(observer)) {
  if (observer_) thread_ = std::thread([this] { run(); });
}

EventBus::~EventBus() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EventBus::emit(nlohmann::json event) {
  if (!observer_) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (event.value("event", "") == "progress" && !queue_.empty()) {
      auto& last = queue_.back();
      if (last.value("event", "") == "progress" &&
          last.value("phase", "") == event.value("phase", "")) {
        last = std::move(event);
        ++coalesced_;
        return;
      }
    }
    queue_.push_back(std::move(event));
  }
  cv_.notify_one();
}

void EventBus::flush() {
  if (!observer_) return;
  std::unique_lock<std::mutex> l(mu_);
  idle_.wait(l, [&] { return queue_.empty() && !busy_; });
}

uint64_t EventBus::coalesced() const {
  std::lock_guard<std::mutex> g(mu_);
  return coalesced_;
}

void EventBus::run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty() && stop_) break;
    nlohmann::json e = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    l.unlock();
    try {
      observer_(e);
    } catch (...) {
      // An observer that throws loses its event, never the operation.
    }
    l.lock();
    busy_ = false;
    if (queue_.empty()) idle_.notify_all();
  }
  idle_.notify_all();
}

}  // namespace mup::engine
