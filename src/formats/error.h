// qtx's single error type: every user-facing failure is one line "where: what".
#pragma once
#include <stdexcept>
#include <string>

namespace qtx {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Throws qtx::Error("<where>: <what>").
[[noreturn]] inline void fail(const std::string& where, const std::string& what) {
  throw Error(where.empty() ? what : where + ": " + what);
}

}  // namespace qtx
