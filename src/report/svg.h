// Minimal SVG charts (no dependencies) for the docs: per-channel ranges, histograms, and
// line/scatter plots such as a Pareto frontier.
#pragma once
#include <string>
#include <vector>

namespace qtx {

struct Series {
  std::string label;
  std::vector<double> x, y;
  bool line = true;  // false: markers only
};

// Vertical bar from lo[i] to hi[i] for each channel i.
std::string svg_channel_ranges(const std::string& title, const std::vector<float>& lo, const std::vector<float>& hi);
// Bars of counts over labelled bins; log_y plots log10(1 + count).
std::string svg_histogram(const std::string& title, const std::vector<std::string>& bin_labels,
                          const std::vector<double>& counts, bool log_y, const std::string& y_label);
std::string svg_xy(const std::string& title, const std::string& x_label, const std::string& y_label,
                   const std::vector<Series>& series);

}  // namespace qtx
