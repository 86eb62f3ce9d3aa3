#include "formats/site_pattern.h"

namespace qtx {
namespace {

bool glob(const char* p, const char* s) {
  // Iterative glob with backtracking to the last '*'.
  const char *star = nullptr, *mark = nullptr;
  while (*s) {
    if (*p == '*') {
      star = p++;
      mark = s;
    } else if (*p == *s) {
      ++p;
      ++s;
    } else if (star) {
      p = star + 1;
      s = ++mark;
    } else {
      return false;
    }
  }
  while (*p == '*') ++p;
  return *p == 0;
}

}  // namespace

bool site_pattern_matches(const std::string& pattern, const std::string& name) {
  if (glob(pattern.c_str(), name.c_str())) return true;
  for (size_t i = name.find('.'); i != std::string::npos; i = name.find('.', i + 1))
    if (glob(pattern.c_str(), name.c_str() + i + 1)) return true;
  return false;
}

bool name_ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace qtx
