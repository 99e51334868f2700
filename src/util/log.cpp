#include "sink/util/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace sink::log {

namespace {
// Everything goes to stderr: stdout is for results (paths, generated text).
spdlog::logger& logger() {
  static auto l = [] {
    auto lg = spdlog::stderr_color_mt("sink");
    lg->set_pattern("[%Y-%m-%d %H:%M:%S] [%^%l%$] %v");
    return lg;
  }();
  return *l;
}
}  // namespace

void set_level(const std::string& level) { logger().set_level(spdlog::level::from_str(level)); }
void debug(const std::string& m) { logger().debug(m); }
void info(const std::string& m) { logger().info(m); }
void warn(const std::string& m) { logger().warn(m); }
void error(const std::string& m) { logger().error(m); }

}  // namespace sink::log
