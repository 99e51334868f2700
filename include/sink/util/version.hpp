// The version and the commit a binary was built from. CMake defines both for the files that
// print or record them (CMakeLists.txt); these are the fallbacks for a build without git.
#pragma once

#ifndef SINK_VERSION
#define SINK_VERSION "0.1.0"
#endif
#ifndef SINK_GIT_COMMIT
#define SINK_GIT_COMMIT "unknown"
#endif
