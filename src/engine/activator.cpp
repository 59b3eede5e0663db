#include "engine/activator.hpp"

#include "store/install_store.hpp"

namespace mup::engine {

std::optional<std::string> SymlinkActivator::active(const std::string& c) const {
  return store_.active(c);
}
std::optional<std::string> SymlinkActivator::previous(const std::string& c) const {
  return store_.previous(c);
}
Status SymlinkActivator::switch_to(const std::string& c, const std::string& v) {
  return store_.activate(c, v);
}
Status SymlinkActivator::set_previous(const std::string& c, const std::optional<std::string>& v) {
  return store_.set_previous(c, v);
}
Status SymlinkActivator::deactivate(const std::string& c) {
  return store_.deactivate(c);
}

}  // namespace mup::engine
