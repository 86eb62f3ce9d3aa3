#include "report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace qtx {
namespace {

constexpr double kW = 720, kH = 360, kL = 70, kR = 20, kT = 40, kB = 50;  // size and margins

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

struct Frame {
  double x0, x1, y0, y1;
  double px(double x) const { return kL + (x - x0) / (x1 - x0 == 0 ? 1 : x1 - x0) * (kW - kL - kR); }
  double py(double y) const { return kH - kB - (y - y0) / (y1 - y0 == 0 ? 1 : y1 - y0) * (kH - kT - kB); }
};

std::string open_svg(const std::string& title, const Frame& f, const std::string& xl, const std::string& yl) {
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\"" << kH
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << kW / 2 << "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">" << esc(title) << "</text>\n"
    << "<line x1=\"" << kL << "\" y1=\"" << kH - kB << "\" x2=\"" << kW - kR << "\" y2=\"" << kH - kB << "\" stroke=\"black\"/>\n"
    << "<line x1=\"" << kL << "\" y1=\"" << kT << "\" x2=\"" << kL << "\" y2=\"" << kH - kB << "\" stroke=\"black\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    double y = f.y0 + (f.y1 - f.y0) * i / 4, x = f.x0 + (f.x1 - f.x0) * i / 4;
    o << "<text x=\"" << kL - 6 << "\" y=\"" << f.py(y) + 4 << "\" text-anchor=\"end\">" << num(y) << "</text>\n";
    o << "<text x=\"" << f.px(x) << "\" y=\"" << kH - kB + 16 << "\" text-anchor=\"middle\">" << num(x) << "</text>\n";
  }
  o << "<text x=\"" << (kL + kW - kR) / 2 << "\" y=\"" << kH - 10 << "\" text-anchor=\"middle\">" << esc(xl) << "</text>\n";
  o << "<text transform=\"translate(16," << (kT + kH - kB) / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << esc(yl)
    << "</text>\n";
  return o.str();
}

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

}  // namespace

std::string svg_channel_ranges(const std::string& title, const std::vector<float>& lo, const std::vector<float>& hi) {
  const size_t n = lo.size();
  Frame f{0, static_cast<double>(n), *std::min_element(lo.begin(), lo.end()), *std::max_element(hi.begin(), hi.end())};
  std::ostringstream o;
  o << open_svg(title, f, "channel", "min / max");
  const double w = std::max(1.0, (kW - kL - kR) / std::max<size_t>(n, 1) * 0.8);
  for (size_t i = 0; i < n; ++i)
    o << "<rect x=\"" << f.px(i + 0.1) << "\" y=\"" << f.py(hi[i]) << "\" width=\"" << w << "\" height=\""
      << std::max(0.5, f.py(lo[i]) - f.py(hi[i])) << "\" fill=\"" << kColors[0] << "\"/>\n";
  o << "</svg>\n";
  return o.str();
}

std::string svg_histogram(const std::string& title, const std::vector<std::string>& bin_labels,
                          const std::vector<double>& counts, bool log_y, const std::string& y_label) {
  std::vector<double> v(counts);
  if (log_y)
    for (double& c : v) c = std::log10(1 + c);
  const size_t n = v.size();
  Frame f{0, static_cast<double>(n), 0, std::max(1e-9, *std::max_element(v.begin(), v.end()))};
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\"" << kH
    << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << kW / 2 << "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">" << esc(title) << "</text>\n"
    << "<line x1=\"" << kL << "\" y1=\"" << kH - kB << "\" x2=\"" << kW - kR << "\" y2=\"" << kH - kB << "\" stroke=\"black\"/>\n"
    << "<text transform=\"translate(16," << (kT + kH - kB) / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << esc(y_label)
    << "</text>\n";
  const double w = (kW - kL - kR) / std::max<size_t>(n, 1);
  for (size_t i = 0; i < n; ++i) {
    o << "<rect x=\"" << f.px(i) + 1 << "\" y=\"" << f.py(v[i]) << "\" width=\"" << w - 2 << "\" height=\""
      << f.py(0) - f.py(v[i]) << "\" fill=\"" << kColors[0] << "\"/>\n";
    if (n <= 24 || i % (n / 12 + 1) == 0)
      o << "<text x=\"" << f.px(i + 0.5) << "\" y=\"" << kH - kB + 14 << "\" text-anchor=\"middle\">" << esc(bin_labels[i])
        << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

std::string svg_xy(const std::string& title, const std::string& x_label, const std::string& y_label,
                   const std::vector<Series>& series) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  Frame f{x0, x1, y0, y1};
  std::ostringstream o;
  o << open_svg(title, f, x_label, y_label);
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const char* c = kColors[k % 6];
    if (s.line && s.x.size() > 1) {
      o << "<polyline fill=\"none\" stroke=\"" << c << "\" stroke-width=\"1.5\" points=\"";
      for (size_t i = 0; i < s.x.size(); ++i) o << f.px(s.x[i]) << "," << f.py(s.y[i]) << " ";
      o << "\"/>\n";
    }
    for (size_t i = 0; i < s.x.size(); ++i)
      o << "<circle cx=\"" << f.px(s.x[i]) << "\" cy=\"" << f.py(s.y[i]) << "\" r=\"3\" fill=\"" << c << "\"/>\n";
    o << "<text x=\"" << kW - kR - 150 << "\" y=\"" << kT + 14 * (k + 1) << "\" fill=\"" << c << "\">" << esc(s.label)
      << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace qtx
