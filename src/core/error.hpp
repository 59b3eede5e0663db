// mup::Error and mup::Result: how every module reports failure.
//
// Contract: functions that can fail return `Result<T>` (tl::expected<T, Error>) and are
// [[nodiscard]]. No exception crosses a module boundary; library calls that throw are
// wrapped at the edge. An Error carries a code (what kind of failure, for callers that
// branch on it) and a message for people that says what failed, on what, and what to do.
// `context()` prepends where it happened: "while unpacking web 2.1.0: chunk 3f2a…: ...".
// Errors are plain values: copyable, thread-compatible.
//
// Codes come at two levels. code() is the generic kind (Errc), which every error has.
// A module may also give its errors codes of its own, in its own category, so that an API
// client or the canary judge branches on "engine.pinned" rather than on message text
// (Mender's error categories). An error built from an Errc alone is in the "core"
// category with the Errc as its value. A module declares its codes like this:
//
//   namespace mup::engine {
//   enum class Code { pinned = 1, no_such_version };
//   const ErrorCategory& engine_category();  // {"engine", name of a value}, one static object
//   // Found by ADL; they make Code work with fail(), make_error() and Error::is().
//   inline const ErrorCategory& error_category(Code) { return engine_category(); }
//   constexpr Errc errc_for(Code c) {
//     return c == Code::pinned ? Errc::invalid_argument : Errc::not_found;
//   }
//   }  // namespace mup::engine
//
//   return fail(engine::Code::pinned, "web is pinned to 2.0.0; `mup pin web --clear` first");
//   if (r.error().is(engine::Code::pinned)) ...  // and r.error().code() is invalid_argument
//   r.error().code_string()                        // "engine.pinned"
//
// Categories are compared by address: define each as one static object that lives as long
// as the program.
//
// A failure while cleaning up after a failure is chained on, never dropped:
// `first.followed_by(cleanup)` keeps first's codes, reads "<first>; and then, while
// cleaning up: <cleanup>", and followed() keeps the cleanup errors themselves (Mender's
// FollowedBy).
#pragma once

#include <concepts>
#include <memory>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <type_traits>
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

// A module's codes: its name ("engine") and the name of each value ("pinned").
// Compared by address.
struct ErrorCategory {
  std::string_view name;
  std::string_view (*code_name)(int value);
};

// The category of errors built from an Errc alone; its values are the Errc.
const ErrorCategory& core_category();

// Errc is a module code of the core category, so Error::is(Errc::no_space) works.
inline const ErrorCategory& error_category(Errc) {
  return core_category();
}
constexpr Errc errc_for(Errc c) {
  return c;
}

// An enum whose values are the codes of a category: see the example at the top.
template <class E>
concept has_error_category = std::is_enum_v<E> && requires(E e) {
  { error_category(e) } -> std::convertible_to<const ErrorCategory&>;
  { errc_for(e) } -> std::same_as<Errc>;
};

class Error {
 public:
  Error(Errc code, std::string message)
      : code_(code),
        category_(&core_category()),
        value_(static_cast<int>(code)),
        message_(std::move(message)) {}
  Error(Errc code, const ErrorCategory& category, int value, std::string message)
      : code_(code), category_(&category), value_(value), message_(std::move(message)) {}

  Errc code() const { return code_; }
  const std::string& message() const { return message_; }
  const ErrorCategory& category() const { return *category_; }
  int value() const { return value_; }

  // True when this error has exactly that module code.
  bool is(const ErrorCategory& category, int value) const;
  template <class E>
  requires has_error_category<E>
  bool is(E code) const { return is(error_category(code), static_cast<int>(code)); }
  // "<category>.<code name>", e.g. "engine.pinned", "core.no_space".
  std::string code_string() const;

  // Returns a copy with `where` prepended: "where: message".
  [[nodiscard]] Error context(std::string_view where) const& {
    Error e = *this;
    e.message_.insert(0, std::string(where) + ": ");
    return e;
  }
  [[nodiscard]] Error context(std::string_view where) && {
    message_.insert(0, std::string(where) + ": ");
    return std::move(*this);
  }

  // This error, with `cleanup` (what failed while cleaning up after it) chained on:
  // same codes, message "<this>; and then, while cleaning up: <cleanup>".
  [[nodiscard]] Error followed_by(Error cleanup) const;
  // The cleanup errors chained on, oldest first (empty for most errors).
  const std::vector<Error>& followed() const;

 private:
  Errc code_;
  const ErrorCategory* category_;
  int value_;
  std::string message_;
  // Shared and immutable once built, so copying an Error stays cheap.
  std::shared_ptr<const std::vector<Error>> followed_;
};

template <typename T>
using Result = tl::expected<T, Error>;

using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> fail(Errc code, std::string message) {
  return tl::unexpected<Error>(Error(code, std::move(message)));
}

// An Error with a module code: its Errc is errc_for(code).
template <class E>
requires has_error_category<E> Error make_error(E code, std::string message) {
  return Error(errc_for(code), error_category(code), static_cast<int>(code), std::move(message));
}
template <class E>
requires has_error_category<E> tl::unexpected<Error> fail(E code, std::string message) {
  return tl::unexpected<Error>(make_error(code, std::move(message)));
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
