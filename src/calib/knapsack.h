// Multiple-choice knapsack, solved exactly by dynamic programming over total cost: pick one
// option per item minimising the summed value under a cost budget (Liu et al.'s mixed-precision
// choice: items = modules, options = bit-widths, cost = weight bits, value = sensitivity Ω).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace qtx {

struct KnapsackSolution {
  bool feasible = false;
  std::vector<int> option;  // chosen option per item
  int64_t cost = 0;
  double value = 0;
};

// cost[i][k] ≥ 0 and value[i][k] of option k of item i. Costs are divided by their greatest
// common divisor first; throws qtx::Error if the reduced budget still needs more than
// `max_states` DP columns. Among equal least values the cheaper total wins.
KnapsackSolution solve_knapsack(const std::vector<std::vector<int64_t>>& cost,
                                const std::vector<std::vector<double>>& value, int64_t budget,
                                int64_t max_states = 20000000);

// (cost, least total value at that cost or less) for every cost where the least value
// improves: the Pareto frontier, cheapest first.
std::vector<std::pair<int64_t, double>> knapsack_frontier(const std::vector<std::vector<int64_t>>& cost,
                                                          const std::vector<std::vector<double>>& value,
                                                          int64_t max_states = 20000000);

}  // namespace qtx
