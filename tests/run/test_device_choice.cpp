// choose_device (src/run/device.cpp): the rules of both builds, with the machine given as
// arguments (a CPU build never sees a GPU, so the CUDA build's rules are checked here too).
#include <gtest/gtest.h>

#include "sink/run/device.hpp"

using sink::choose_device;

TEST(DeviceChoice, CpuBuild) {
  auto c = choose_device("cpu", 1, 0, false, 0, true, "h");
  EXPECT_EQ(c.device, "cpu");
  EXPECT_TRUE(c.warning.empty() && c.error.empty());
  c = choose_device("auto", 4, 3, false, 0, false, "h");
  EXPECT_EQ(c.device, "cpu");
  EXPECT_TRUE(c.warning.empty());
  c = choose_device("auto", 1, 0, false, 0, true, "h");  // a GPU the build cannot use: said once, with the fix
  EXPECT_EQ(c.device, "cpu");
  EXPECT_NE(c.warning.find("SINK_BUILD=cuda bash tools/setup.sh build"), std::string::npos);
  c = choose_device("cuda:0", 1, 0, false, 0, true, "h");
  EXPECT_TRUE(c.device.empty());
  EXPECT_NE(c.error.find("needs a CUDA build"), std::string::npos);
}

TEST(DeviceChoice, CudaBuild) {
  EXPECT_EQ(choose_device("auto", 4, 2, true, 4, false, "h").device, "cuda:2");  // node-local GPU
  EXPECT_EQ(choose_device("auto", 8, 5, true, 1, false, "h").device, "cuda:0");  // Slurm bound one GPU per task
  EXPECT_EQ(choose_device("auto", 2, 1, true, 1, false, "h").device, "cuda:0");  // two ranks share one card
  auto c = choose_device("auto", 8, 5, true, 4, false, "node7");                 // more ranks than GPUs on a node
  EXPECT_TRUE(c.device.empty());
  EXPECT_NE(c.error.find("local rank 5 on node7 but only 4 GPUs"), std::string::npos);
  c = choose_device("auto", 1, 0, true, 0, false, "h");  // a CPU node: the CPU, said
  EXPECT_EQ(c.device, "cpu");
  EXPECT_NE(c.warning.find("no GPU visible"), std::string::npos);
  EXPECT_EQ(choose_device("cuda:1", 1, 0, true, 2, false, "h").device, "cuda:1");
  EXPECT_NE(choose_device("cuda:2", 1, 0, true, 2, false, "h").error.find("has 2 visible GPU(s)"), std::string::npos);
  EXPECT_NE(choose_device("cuda:0", 1, 0, true, 0, false, "h").error.find("no GPU visible"), std::string::npos);
  EXPECT_EQ(choose_device("cuda:0", 2, 1, true, 2, false, "h").device, "cuda:1");  // several ranks: each its own
  EXPECT_EQ(choose_device("cpu", 2, 1, true, 2, false, "h").device, "cpu");
}
