// mup::Error and mup::Result: how every module reports failure.
//
// Contract: functions that can fail return `Result<T>` (tl::expected<T, Error>) and are
// [[nodiscard]]. No exception crosses a module boundary; library calls that throw are
// wrapped at the edge. An Error carries a code (what kind of failure, for callers that
// branch on it) and a message for people that says what failed, on what, and what to do.
// `context()` prepends where it happened: "while unpacking web 2.1.0: chunk 3f2a…: ...".
// Errors are plain values: copyable, thread-compatible.
//
// Module codes: besides its core Errc, an Error may carry a code of a module's own
// category, so a caller branches on what the module means ("engine.pinned"), not on text:
//
//     const ErrorCategory& engine_category();          // {"engine", &name_of_code}
//     Error e(Errc::invalid_argument, engine_category(), int(Code::pinned), "app is pinned");
//     if (e.is(engine_category(), int(Code::pinned))) ...;   e.code_string() == "engine.pinned"
//
// A failure while cleaning up after an error is chained onto it (followed_by), never
// dropped: the message then reads "<first>; and then, while cleaning up: <second>".
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

namespace mup {

enum class Errc {
  invalid_argument,  // the caller asked for something malformed
  not_found,         // a file, chunk, delta or entry is missing
  already_exists,    // refusing to overwrite
  io,                // the OS said no (errno is in the message)
  no_space,          // ENOSPC / EDQUOT
  corrupt,           // bytes failed verification (hash, length, format)
  unsupported,       // a format version or feature this build does not know
  internal,          // a bug: an invariant did not hold
  busy,              // another process holds what is needed (a node lock)
};

std::string_view errc_name(Errc c);

// A module's family of error codes: its name and how to name a value. Categories are
// compared by address: define each as one static object.
struct ErrorCategory {
  std::string_view name;
  std::string_view (*code_name)(int value);
};
// The category of plain core errors (values are the Errc).
const ErrorCategory& core_category();

class Error {
 public:
  Error(Errc code, std::string message) : code_(code), message_(std::move(message)) {}
  Error(Errc code, const ErrorCategory& category, int value, std::string message)
      : code_(code), category_(&category), value_(value), message_(std::move(message)) {}

  Errc code() const { return code_; }
  const std::string& message() const { return message_; }
  const ErrorCategory& category() const { return category_ ? *category_ : core_category(); }
  int value() const { return category_ ? value_ : static_cast<int>(code_); }
  bool is(const ErrorCategory& c, int value) const {
    return &category() == &c && this->value() == value;
  }
  // "<category>.<code>", e.g. "engine.pinned" or "core.no_space".
  std::string code_string() const;

  // This error with `cleanup` (a failure while undoing after it) chained on.
  [[nodiscard]] Error followed_by(Error cleanup) const;
  const std::vector<Error>& followed() const;

  // Returns a copy with `where` prepended: "where: message".
  [[nodiscard]] Error context(std::string_view where) const& {
    return Error(code_, std::string(where) + ": " + message_);
  }
  [[nodiscard]] Error context(std::string_view where) && {
    message_.insert(0, std::string(where) + ": ");
    return std::move(*this);
  }

 private:
  Errc code_;
  const ErrorCategory* category_ = nullptr;
  int value_ = 0;
  std::string message_;
  std::shared_ptr<const std::vector<Error>> followed_;  // cleanup failures, in order
};

template <typename T>
using Result = tl::expected<T, Error>;

using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> fail(Errc code, std::string message) {
  return tl::unexpected<Error>(Error(code, std::move(message)));
}

// Error from errno after a failed system call on `what` (a path or an object).
tl::unexpected<Error> fail_errno(std::string_view op, std::string_view what, int err);

// Propagates an error out of the enclosing function, with no added context.
#define MUP_TRY(expr)                                                     \
  do {                                                                    \
    if (auto mup_try_r_ = (expr); !mup_try_r_)                            \
      return tl::unexpected<::mup::Error>(std::move(mup_try_r_).error()); \
  } while (0)

}  // namespace mup
