// eigenet/error.hpp — the one exception hierarchy of the library.
//
// Every check at the API boundary throws a class derived from eigenet::Error, with a
// message that names the component, the argument, what was expected and what was given.
// The library never prints and never calls exit.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace eigenet {

/// Base class of every exception eigenet throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// A tensor has the wrong rank or extent.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// An argument has a value outside its domain (a probability above 1, a negative eps, ...).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// A layer was used out of order (backward before forward, ...).
class StateError : public Error {
 public:
  using Error::Error;
};

/// A file could not be read or has the wrong format.
class IoError : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

}  // namespace detail
}  // namespace eigenet
