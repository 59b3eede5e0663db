// Activator: what "make version V of component C the running one" means on this node.
//
// The engine journals its intent, then asks the Activator to switch; recovery asks it what
// is active to decide whether a switch happened. Today the only activator is the install
// store's pointer swap (SymlinkActivator: `current` and `previous` replaced by rename(2));
// a service supervisor with its traffic proxy, and a boot-slot switch, implement the same
// interface later. Contract for every implementation:
//   - switch_to() is all or nothing as seen by active(): after a crash at any point,
//     active() names the old version or the new one;
//   - switch_to() and set_previous() are idempotent (recovery calls them again);
//   - deactivate() leaves the component with no active version (undo of a first install).
// Calls for one component are serialised by the engine (its component lock).
#pragma once

#include <optional>
#include <string>

#include "core/error.hpp"

namespace mup::store {
class InstallStore;
}

namespace mup::engine {

class Activator {
 public:
  virtual ~Activator() = default;
  virtual std::optional<std::string> active(const std::string& component) const = 0;
  virtual std::optional<std::string> previous(const std::string& component) const = 0;
  // Makes `version` active; the version active before becomes `previous`.
  [[nodiscard]] virtual Status switch_to(const std::string& component,
                                         const std::string& version) = 0;
  [[nodiscard]] virtual Status set_previous(const std::string& component,
                                            const std::optional<std::string>& version) = 0;
  [[nodiscard]] virtual Status deactivate(const std::string& component) = 0;
};

// The install store's pointers (components/<name>/current and previous).
class SymlinkActivator : public Activator {
 public:
  explicit SymlinkActivator(store::InstallStore& store) : store_(store) {}
  std::optional<std::string> active(const std::string& component) const override;
  std::optional<std::string> previous(const std::string& component) const override;
  [[nodiscard]] Status switch_to(const std::string& component, const std::string& version) override;
  [[nodiscard]] Status set_previous(const std::string& component,
                                    const std::optional<std::string>& version) override;
  [[nodiscard]] Status deactivate(const std::string& component) override;

 private:
  store::InstallStore& store_;
};

}  // namespace mup::engine
