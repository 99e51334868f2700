// Logging with levels (spdlog underneath). A narrow interface on purpose:
// libtorch ships its own fmt headers, which clash with the fmt that Debian's
// spdlog is built against, so translation units that include libtorch log
// through these functions and never include spdlog themselves.
#pragma once

#include <string>

namespace sink::log {

void set_level(const std::string& level);  // trace | debug | info | warn | error | off
void debug(const std::string& msg);
void info(const std::string& msg);
void warn(const std::string& msg);
void error(const std::string& msg);

}  // namespace sink::log
