#include "core/error.hpp"

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

namespace mup {

std::string_view errc_name(Errc c) {
  switch (c) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::already_exists: return "already_exists";
    case Errc::io: return "io";
    case Errc::no_space: return "no_space";
    case Errc::corrupt: return "corrupt";
    case Errc::unsupported: return "unsupported";
    case Errc::internal: return "internal";
    case Errc::busy: return "busy";
  }
  return "unknown";
}

namespace {

std::string_view core_code_name(int value) {
  return errc_name(static_cast<Errc>(value));
}

}  // namespace

const ErrorCategory& core_category() {
  static const ErrorCategory category{"core", &core_code_name};
  return category;
}

bool Error::is(const ErrorCategory& category, int value) const {
  return category_ == &category && value_ == value;
}

std::string Error::code_string() const {
  std::string_view name = category_->code_name ? category_->code_name(value_) : "";
  return std::string(category_->name) + "." +
         (name.empty() ? std::to_string(value_) : std::string(name));
}

Error Error::followed_by(Error cleanup) const {
  Error e = *this;
  e.message_ += "; and then, while cleaning up: " + cleanup.message();
  auto list = followed_ ? std::make_shared<std::vector<Error>>(*followed_)
                        : std::make_shared<std::vector<Error>>();
  list->push_back(std::move(cleanup));
  e.followed_ = std::move(list);
  return e;
}

const std::vector<Error>& Error::followed() const {
  static const std::vector<Error> none;
  return followed_ ? *followed_ : none;
}

tl::unexpected<Error> fail_errno(std::string_view op, std::string_view what, int err) {
  Errc code = Errc::io;
  if (err == ENOENT) code = Errc::not_found;
  if (err == EEXIST) code = Errc::already_exists;
  if (err == ENOSPC || err == EDQUOT) code = Errc::no_space;
  std::string msg = std::string(op) + " " + std::string(what) + ": " + std::strerror(err);
  if (code == Errc::no_space) msg += " (free some space and retry; nothing was changed)";
  return tl::unexpected<Error>(Error(code, std::move(msg)));
}

}  // namespace mup
