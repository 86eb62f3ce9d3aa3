#include "calib/knapsack.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "formats/error.h"

namespace qtx {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// best[c] = least value with reduced total cost exactly c; from[i][c] = option of item i there.
struct Table {
  int64_t unit = 1;
  std::vector<double> best;
  std::vector<std::vector<int>> from;
};

Table fill(const std::vector<std::vector<int64_t>>& cost, const std::vector<std::vector<double>>& value,
           int64_t cap_cost, int64_t max_states) {
  if (cost.size() != value.size()) fail("knapsack", "cost and value tables differ in size");
  Table t;
  int64_t g = 0, top = 0;
  for (size_t i = 0; i < cost.size(); ++i) {
    if (cost[i].empty() || cost[i].size() != value[i].size()) fail("knapsack", "item " + std::to_string(i) + " has no options or mismatched tables");
    int64_t hi = 0;
    for (int64_t c : cost[i]) {
      if (c < 0) fail("knapsack", "negative cost");
      g = std::gcd(g, c);
      hi = std::max(hi, c);
    }
    top += hi;
  }
  t.unit = g > 0 ? g : 1;
  const int64_t cols = std::min(top, cap_cost) / t.unit + 1;
  if (cols > max_states) fail("knapsack", "budget needs " + std::to_string(cols) + " DP states (limit " + std::to_string(max_states) + ")");
  t.best.assign(static_cast<size_t>(cols), kInf);
  t.best[0] = 0;
  for (size_t i = 0; i < cost.size(); ++i) {
    std::vector<double> next(static_cast<size_t>(cols), kInf);
    std::vector<int> choice(static_cast<size_t>(cols), -1);
    for (int64_t c = 0; c < cols; ++c) {
      if (t.best[static_cast<size_t>(c)] == kInf) continue;
      for (size_t k = 0; k < cost[i].size(); ++k) {
        const int64_t n = c + cost[i][k] / t.unit;
        if (n >= cols) continue;
        const double v = t.best[static_cast<size_t>(c)] + value[i][k];
        if (v < next[static_cast<size_t>(n)]) {
          next[static_cast<size_t>(n)] = v;
          choice[static_cast<size_t>(n)] = static_cast<int>(k);
        }
      }
    }
    t.best.swap(next);
    t.from.push_back(std::move(choice));
  }
  return t;
}

}  // namespace

KnapsackSolution solve_knapsack(const std::vector<std::vector<int64_t>>& cost,
                                const std::vector<std::vector<double>>& value, int64_t budget, int64_t max_states) {
  KnapsackSolution s;
  if (budget < 0) return s;
  Table t = fill(cost, value, budget, max_states);
  int64_t at = -1;
  for (int64_t c = 0; c < static_cast<int64_t>(t.best.size()); ++c)
    if (t.best[static_cast<size_t>(c)] < kInf && (at < 0 || t.best[static_cast<size_t>(c)] < t.best[static_cast<size_t>(at)])) at = c;
  if (at < 0) return s;
  s.feasible = true;
  s.value = t.best[static_cast<size_t>(at)];
  s.cost = at * t.unit;
  s.option.assign(cost.size(), 0);
  // Walk back: the option that reached (item, cost) fixes the cost before that item.
  int64_t c = at;
  for (size_t i = cost.size(); i-- > 0;) {
    const int k = t.from[i][static_cast<size_t>(c)];
    s.option[i] = k;
    c -= cost[i][static_cast<size_t>(k)] / t.unit;
  }
  return s;
}

std::vector<std::pair<int64_t, double>> knapsack_frontier(const std::vector<std::vector<int64_t>>& cost,
                                                          const std::vector<std::vector<double>>& value,
                                                          int64_t max_states) {
  Table t = fill(cost, value, std::numeric_limits<int64_t>::max(), max_states);
  std::vector<std::pair<int64_t, double>> f;
  double least = kInf;
  for (int64_t c = 0; c < static_cast<int64_t>(t.best.size()); ++c)
    if (t.best[static_cast<size_t>(c)] < least) {
      least = t.best[static_cast<size_t>(c)];
      f.emplace_back(c * t.unit, least);
    }
  return f;
}

}  // namespace qtx
