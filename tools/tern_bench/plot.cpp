#include "tools/tern_bench/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tern::bench {

namespace {

constexpr double kWidth = 800, kHeight = 640;
constexpr double kLeft = 80, kRight = 30, kPlotW = kWidth - kLeft - kRight;
constexpr double kTop1 = 50, kTop2 = 370, kPlotH = 220;

std::string f(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
double nice_ceiling(double v) {
  if (v <= 0) return 1;
  double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (v <= m * p) return m * p;
  return 10 * p;
}

void text(std::string* svg, double x, double y, const std::string& s, const char* anchor = "middle",
          const char* extra = "") {
  *svg += "<text x=\"" + f(x) + "\" y=\"" + f(y) + "\" text-anchor=\"" + anchor + "\"" + extra + ">" + escape(s) +
          "</text>\n";
}

void line(std::string* svg, double x1, double y1, double x2, double y2, const char* style) {
  *svg += "<line x1=\"" + f(x1) + "\" y1=\"" + f(y1) + "\" x2=\"" + f(x2) + "\" y2=\"" + f(y2) + "\" " + style +
          "/>\n";
}

void frame(std::string* svg, double top, const std::string& title, const std::string& xlabel,
           const std::string& ylabel) {
  *svg += "<rect x=\"" + f(kLeft) + "\" y=\"" + f(top) + "\" width=\"" + f(kPlotW) + "\" height=\"" + f(kPlotH) +
          "\" fill=\"#fafafa\" stroke=\"#444\"/>\n";
  text(svg, kWidth / 2, top - 14, title, "middle", " font-weight=\"bold\"");
  text(svg, kLeft + kPlotW / 2, top + kPlotH + 38, xlabel);
  *svg += "<text x=\"20\" y=\"" + f(top + kPlotH / 2) + "\" text-anchor=\"middle\" transform=\"rotate(-90 20 " +
          f(top + kPlotH / 2) + ")\">" + escape(ylabel) + "</text>\n";
}

void y_ticks(std::string* svg, double top, double ymax) {
  for (int i = 0; i <= 4; ++i) {
    double v = ymax * i / 4;
    double y = top + kPlotH - kPlotH * i / 4;
    line(svg, kLeft, y, kLeft + kPlotW, y, "stroke=\"#ddd\"");
    char buf[32];
    std::snprintf(buf, sizeof buf, v >= 100 || v == 0 ? "%.0f" : (v >= 1 ? "%.1f" : "%.3f"), v);
    text(svg, kLeft - 6, y + 4, buf, "end");
  }
}

}  // namespace

std::string render_svg(const Stats& s, const RunInfo& info) {
  std::string svg;
  svg += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + f(kWidth) + "\" height=\"" + f(kHeight) +
         "\" viewBox=\"0 0 " + f(kWidth) + " " + f(kHeight) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  text(&svg, kWidth / 2, 18,
       "tern-bench " + info.options.target + ": " + std::to_string(s.accepted) + " accepted of " +
           std::to_string(s.sent) + " in " + f(info.elapsed_s) + " s");

  // 1. Throughput over time: accepted messages per second.
  frame(&svg, kTop1, "Throughput (accepted messages per second)", "seconds since start", "msg/s");
  const auto& series = s.accepted_per_second;
  uint64_t peak = series.empty() ? 0 : *std::max_element(series.begin(), series.end());
  double ymax = nice_ceiling(static_cast<double>(peak));
  double seconds = std::max<double>(1.0, static_cast<double>(series.size()));
  y_ticks(&svg, kTop1, ymax);
  for (int i = 0; i <= 5; ++i) {
    double x = kLeft + kPlotW * i / 5;
    text(&svg, x, kTop1 + kPlotH + 16, f(seconds * i / 5));
  }
  svg += "<polyline id=\"throughput\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"";
  for (size_t i = 0; i < series.size(); ++i) {
    double x0 = kLeft + kPlotW * static_cast<double>(i) / seconds;
    double x1 = kLeft + kPlotW * static_cast<double>(i + 1) / seconds;
    double y = kTop1 + kPlotH - kPlotH * static_cast<double>(series[i]) / ymax;
    svg += f(x0) + "," + f(y) + " " + f(x1) + "," + f(y) + " ";
  }
  svg += "\"/>\n";

  // 2. Latency by percentile, x = log10(1 / (1 - p)).
  frame(&svg, kTop2, "Latency by percentile", "percentile", "latency ms");
  uint64_t count = 0, top = 0;
  static constexpr unsigned kShown[] = {kEnvelope, kData, kMessage};
  static constexpr const char* kColors[] = {"#2ca02c", "#ff7f0e", "#d62728"};
  for (unsigned p : kShown) {
    count = std::max(count, s.latency[p].count());
    top = std::max(top, s.latency[p].max());
  }
  double xmax = std::clamp(std::ceil(std::log10(std::max<double>(10.0, static_cast<double>(count)))), 1.0, 6.0);
  double lmax = nice_ceiling(static_cast<double>(top) / 1000.0);
  y_ticks(&svg, kTop2, lmax);
  for (int d = 0; d <= static_cast<int>(xmax); ++d) {
    double x = kLeft + kPlotW * d / xmax;
    // 0%, 90%, 99%, 99.9%, 99.99%, ...
    static const char* const kLabels[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"};
    std::string label = kLabels[d];
    line(&svg, x, kTop2, x, kTop2 + kPlotH, "stroke=\"#ddd\"");
    text(&svg, x, kTop2 + kPlotH + 16, label);
  }
  for (size_t k = 0; k < std::size(kShown); ++k) {
    const auto& h = s.latency[kShown[k]];
    std::string id = std::string("latency-") + phase_name(kShown[k]);
    svg += "<polyline id=\"" + id + "\" fill=\"none\" stroke=\"" + kColors[k] + "\" stroke-width=\"2\" points=\"";
    if (h.count() > 0) {
      for (double x = 0; x <= xmax + 1e-9; x += 0.05) {
        double pct = 100.0 * (1.0 - std::pow(10.0, -x));
        double v = static_cast<double>(h.percentile(pct)) / 1000.0;
        svg += f(kLeft + kPlotW * x / xmax) + "," + f(kTop2 + kPlotH - kPlotH * std::min(v, lmax) / lmax) + " ";
      }
    }
    svg += "\"/>\n";
    double ly = kTop2 + 16 + 16 * static_cast<double>(k);
    line(&svg, kLeft + 10, ly - 4, kLeft + 30, ly - 4,
         (std::string("stroke=\"") + kColors[k] + "\" stroke-width=\"2\"").c_str());
    text(&svg, kLeft + 36, ly, std::string(phase_name(kShown[k])) + " (" + std::to_string(h.count()) + ")", "start");
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace tern::bench
