// Op-site name patterns, shared by models (hooks), recipes and the integer runtime.
#pragma once
#include <string>

namespace qtx {

// Glob match where '*' matches any run of characters (dots included). A pattern also matches
// when it matches a dot-aligned suffix of the name, so "encoder.layer.*.layernorm_before"
// matches "vit.encoder.layer.3.layernorm_before".
bool site_pattern_matches(const std::string& pattern, const std::string& name);

// True when a dotted name ends with `suffix` (".weight", "matmul_qk", ...).
bool name_ends_with(const std::string& name, const std::string& suffix);

}  // namespace qtx
