#include "quant/recipe.h"

#include <nlohmann/json.hpp>

#include "formats/error.h"
#include "formats/hf_config.h"
#include "formats/site_pattern.h"

namespace qtx {
using nlohmann::json;

namespace {

const char* const kRoleNames[kNumRoles] = {"linear_weight", "linear_input", "qk_input",        "attn_scores",
                                           "softmax_output", "av_input",     "layernorm_input", "act_output",
                                           "residual",      "embedding"};

const char* scheme_name(Scheme s) { return s == Scheme::Uniform ? "uniform" : s == Scheme::Log2 ? "log2" : "ptf"; }
const char* granularity_name(Granularity g) {
  return g == Granularity::Tensor ? "tensor" : g == Granularity::Channel ? "channel" : "group";
}

template <typename T>
T get_as(const json& j, const char* key, const std::string& where) {
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    fail(where, std::string("field '") + key + "' has the wrong type: " + j.at(key).dump());
  }
}

}  // namespace

const char* role_name(Role r) { return kRoleNames[static_cast<int>(r)]; }

bool role_from_name(const std::string& s, Role* out) {
  for (int i = 0; i < kNumRoles; ++i)
    if (s == kRoleNames[i]) {
      *out = static_cast<Role>(i);
      return true;
    }
  return false;
}

const std::vector<Role>& all_roles() {
  static const std::vector<Role> k = [] {
    std::vector<Role> v;
    for (int i = 0; i < kNumRoles; ++i) v.push_back(static_cast<Role>(i));
    return v;
  }();
  return k;
}

int QuantSpec::qmin() const { return symmetric ? -(1 << (bits - 1)) : 0; }
int QuantSpec::qmax() const { return symmetric ? (1 << (bits - 1)) - 1 : (1 << bits) - 1; }

json QuantSpec::to_json() const {
  json j = {{"scheme", scheme_name(scheme)}, {"bits", bits}, {"symmetric", symmetric},
            {"granularity", granularity_name(granularity)}, {"axis", axis}, {"observer", observer}};
  if (granularity == Granularity::Group) j["groups"] = groups;
  if (observer == "percentile" || observer == "percentile-ema") j["percentile"] = percentile;
  if (observer == "ema" || observer == "percentile-ema") j["ema_momentum"] = ema_momentum;
  if (scheme == Scheme::Ptf) j["ptf_k"] = ptf_k;
  if (scheme == Scheme::Log2) j["int_exp"] = int_exp;
  return j;
}

void QuantSpec::update_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, "a quantizer spec must be a JSON object");
  static const char* kKnown[] = {"scheme", "bits", "symmetric", "granularity", "axis", "groups", "observer",
                                 "percentile", "ema_momentum", "ptf_k", "int_exp"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* k : kKnown) known = known || it.key() == k;
    if (!known) fail(where, "unknown field '" + it.key() + "'");
  }
  if (j.contains("scheme")) {
    std::string s = get_as<std::string>(j, "scheme", where);
    if (s == "uniform") scheme = Scheme::Uniform;
    else if (s == "log2") scheme = Scheme::Log2;
    else if (s == "ptf") scheme = Scheme::Ptf;
    else fail(where, "unknown scheme '" + s + "' (uniform | log2 | ptf)");
  }
  if (j.contains("bits")) bits = get_as<int>(j, "bits", where);
  if (j.contains("symmetric")) symmetric = get_as<bool>(j, "symmetric", where);
  if (j.contains("granularity")) {
    std::string g = get_as<std::string>(j, "granularity", where);
    if (g == "tensor") granularity = Granularity::Tensor;
    else if (g == "channel") granularity = Granularity::Channel;
    else if (g == "group") granularity = Granularity::Group;
    else fail(where, "unknown granularity '" + g + "' (tensor | channel | group)");
  }
  if (j.contains("axis")) axis = get_as<int>(j, "axis", where);
  if (j.contains("groups")) groups = get_as<int>(j, "groups", where);
  if (j.contains("observer")) observer = get_as<std::string>(j, "observer", where);
  if (j.contains("percentile")) percentile = get_as<double>(j, "percentile", where);
  if (j.contains("ema_momentum")) ema_momentum = get_as<double>(j, "ema_momentum", where);
  if (j.contains("ptf_k")) ptf_k = get_as<int>(j, "ptf_k", where);
  if (j.contains("int_exp")) int_exp = get_as<bool>(j, "int_exp", where);
  validate(where);
}

void QuantSpec::validate(const std::string& where) const {
  const bool wide = bits == 16 || bits == 32;
  if (!((bits >= 2 && bits <= 8) || wide))
    fail(where, "bits " + std::to_string(bits) + " is out of range (2..8, or 16/32 for biases)");
  if (wide && scheme != Scheme::Uniform) fail(where, "16/32-bit quantizers must be uniform");
  if (scheme == Scheme::Log2 && symmetric) fail(where, "log2 quantizes non-negative values: symmetric must be false");
  if (scheme == Scheme::Ptf && symmetric) fail(where, "PTF is asymmetric (shared zero point): symmetric must be false");
  if (scheme == Scheme::Ptf && (ptf_k < 0 || ptf_k > 7)) fail(where, "ptf_k must be in 0..7");
  if (granularity == Granularity::Group && groups < 1) fail(where, "groups must be >= 1");
  if (!(percentile > 50 && percentile <= 100)) fail(where, "percentile must be in (50, 100]");
  if (!(ema_momentum >= 0 && ema_momentum < 1)) fail(where, "ema_momentum must be in [0, 1)");
  static const char* kObservers[] = {"minmax", "ema", "percentile", "percentile-ema", "omse"};
  bool ok = false;
  for (const char* o : kObservers) ok = ok || observer == o;
  if (!ok) fail(where, "unknown observer '" + observer + "' (minmax | ema | percentile | percentile-ema | omse)");
}

bool Recipe::spec_for(Role r, const std::string& site, QuantSpec* out) const {
  for (const auto& p : exclude)
    if (site_pattern_matches(p, site)) return false;
  bool on = has[static_cast<int>(r)];
  QuantSpec s = roles[static_cast<int>(r)];
  for (const auto& o : overrides) {
    if (o.role != r || !site_pattern_matches(o.pattern, site)) continue;
    if (o.disable) {
      on = false;
      continue;
    }
    on = true;
    s.update_from_json(o.fields, "recipe override '" + o.pattern + "'");
  }
  if (on) *out = s;
  return on;
}

json Recipe::to_json() const {
  json j = {{"name", name}, {"description", description}, {"roles", json::object()}};
  for (Role r : all_roles())
    if (has[static_cast<int>(r)]) j["roles"][role_name(r)] = roles[static_cast<int>(r)].to_json();
  json ov = json::array();
  for (const auto& o : overrides) {
    json e = o.fields;
    e["pattern"] = o.pattern;
    e["role"] = role_name(o.role);
    if (o.disable) e["disable"] = true;
    ov.push_back(e);
  }
  j["overrides"] = ov;
  j["exclude"] = exclude;
  return j;
}

Recipe Recipe::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, "a recipe must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "name" && it.key() != "description" && it.key() != "roles" && it.key() != "overrides" &&
        it.key() != "exclude" && it.key() != "defaults")
      fail(where, "unknown recipe field '" + it.key() + "' (name, description, roles, overrides, exclude)");
  Recipe r;
  if (j.contains("name")) r.name = get_as<std::string>(j, "name", where);
  if (j.contains("description")) r.description = get_as<std::string>(j, "description", where);
  if (!j.contains("roles") || !j["roles"].is_object()) fail(where, "recipe needs a 'roles' object");
  for (auto it = j["roles"].begin(); it != j["roles"].end(); ++it) {
    Role role;
    if (!role_from_name(it.key(), &role)) {
      std::string all;
      for (Role x : all_roles()) all += std::string(all.empty() ? "" : ", ") + role_name(x);
      fail(where, "unknown role '" + it.key() + "' (roles: " + all + ")");
    }
    QuantSpec s;
    // Sensible per-role defaults before the recipe's fields.
    if (role == Role::LinearWeight || role == Role::Embedding) {
      s.symmetric = true;
      s.granularity = Granularity::Channel;
      s.axis = 0;
    }
    s.update_from_json(it.value(), where + ": role " + it.key());
    r.has[static_cast<int>(role)] = true;
    r.roles[static_cast<int>(role)] = s;
  }
  if (j.contains("overrides")) {
    if (!j["overrides"].is_array()) fail(where, "'overrides' must be an array");
    for (const auto& e : j["overrides"]) {
      if (!e.is_object() || !e.contains("pattern") || !e.contains("role") || !e["pattern"].is_string() ||
          !e["role"].is_string())
        fail(where, "each override needs string fields 'pattern' and 'role'");
      RecipeOverride o;
      o.pattern = e["pattern"].get<std::string>();
      if (!role_from_name(e["role"].get<std::string>(), &o.role))
        fail(where, "override '" + o.pattern + "': unknown role '" + e["role"].get<std::string>() + "'");
      o.fields = e;
      o.fields.erase("pattern");
      o.fields.erase("role");
      if (e.contains("disable")) {
        o.disable = get_as<bool>(e, "disable", where);
        o.fields.erase("disable");
      }
      QuantSpec probe = r.has[static_cast<int>(o.role)] ? r.roles[static_cast<int>(o.role)] : QuantSpec{};
      probe.update_from_json(o.fields, where + ": override '" + o.pattern + "'");  // validates early
      r.overrides.push_back(o);
    }
  }
  if (j.contains("exclude")) r.exclude = get_as<std::vector<std::string>>(j, "exclude", where);
  return r;
}

Recipe Recipe::load(const std::string& name_or_path) {
  for (const auto& [name, text] : builtin_recipes())
    if (name == name_or_path) return from_json(json::parse(text), "recipe " + name);
  if (name_or_path.size() < 5 || name_or_path.substr(name_or_path.size() - 5) != ".json") {
    std::string all;
    for (const auto& b : builtin_recipes()) all += (all.empty() ? "" : ", ") + b.first;
    fail("recipe", "'" + name_or_path + "' is neither a built-in recipe (" + all + ") nor a .json file");
  }
  json j;
  try {
    j = json::parse(read_text_file(name_or_path));
  } catch (const json::exception& e) {
    fail(name_or_path, std::string("invalid JSON: ") + e.what());
  }
  Recipe r = from_json(j, name_or_path);
  if (r.name.empty()) r.name = name_or_path;
  return r;
}

}  // namespace qtx
