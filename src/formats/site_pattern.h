// Op-site name patterns, shared by models (hooks), recipes and the integer runtime.
#pragma once
#include <string>

namespace qtx {

// Glob match where '*' matches any run of characters (dots included). A pattern also matches
// when it matches a dot-aligned suffix of the name, so "encoder.layer.*.layernorm_before"
// matches "vit.encoder.layer.3.layernorm_before".
bool site_pattern_matches(const std::string& pattern, const std::string& name);

}  // namespace qtx
