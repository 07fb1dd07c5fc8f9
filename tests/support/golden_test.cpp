// The golden-file reader (tests/support/golden.hpp): it parses the format generate.py
// writes and rejects a missing or malformed file with a message naming file and line, so a
// broken golden file fails loudly instead of comparing against nothing.
#include "support/golden.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

namespace {

using eigenet::Shape;
using eigenet::testing::GoldenError;
using eigenet::testing::GoldenFile;

std::string write_file(const std::string& name, const std::string& text) {
  std::ofstream(::testing::TempDir() + "/" + name + ".txt") << text;
  return name;
}

/// The message GoldenFile throws for `text`, or "" when it reads without error.
std::string error_for(const std::string& text) {
  try {
    GoldenFile(::testing::TempDir(), write_file("golden_reader_case", text));
  } catch (const GoldenError& e) {
    return e.what();
  }
  return "";
}

TEST(GoldenReader, ReadsScalarsAndArraysExactly) {
  const GoldenFile file(::testing::TempDir(), write_file("golden_reader_ok",
                                                         "# a comment\n\neps : 1e-05\nx 2 3 : 0.1 -0.0 3 4.5 "
                                                         "1.4285714285714286 -1e4\nempty 0 :\n"));
  EXPECT_EQ(file.scalar("eps"), 1e-05);
  EXPECT_EQ(file["x"].shape, (Shape{2, 3}));
  EXPECT_EQ(file["x"].values, (std::vector<double>{0.1, -0.0, 3.0, 4.5, 1.4285714285714286, -1e4}));
  EXPECT_EQ(file["empty"].size(), 0);
  EXPECT_EQ((file["x"].tensor<double, 2>()(1, 1)), 1.4285714285714286);
}

TEST(GoldenReader, MissingFileThrowsNamingIt) {
  try {
    GoldenFile("no_such_case");
    FAIL() << "expected GoldenError";
  } catch (const GoldenError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_case.txt"), std::string::npos) << e.what();
  }
}

TEST(GoldenReader, MalformedLinesThrowNamingTheLine) {
  EXPECT_NE(error_for("# header\nx 2 : 1 2 3\n").find("line 2: array \"x\" of shape (2,) should have 2 values, not 3"),
            std::string::npos);
  EXPECT_NE(error_for("x 2 1 2\n").find("line 1: array \"x\" has no ':'"), std::string::npos);
  EXPECT_NE(error_for("x 2 : 1 abc\n").find("value \"abc\""), std::string::npos);
  EXPECT_NE(error_for("x 2 : 1 nan\n").find("value \"nan\""), std::string::npos);
  EXPECT_NE(error_for("x -2 : 1 2\n").find("extent \"-2\""), std::string::npos);
  EXPECT_NE(error_for("x-y : 1\n").find("array name"), std::string::npos);
  EXPECT_NE(error_for("x : 1\nx : 2\n").find("line 2: array \"x\" appears twice"), std::string::npos);
  EXPECT_NE(error_for("# only comments\n").find("holds no arrays"), std::string::npos);
}

TEST(GoldenReader, MissingArrayAndWrongRankThrow) {
  const GoldenFile file(::testing::TempDir(), write_file("golden_reader_rank", "x 2 : 1 2\n"));
  EXPECT_THROW(file["y"], GoldenError);
  EXPECT_THROW(file.scalar("x"), GoldenError);
  EXPECT_THROW((file["x"].tensor<double, 2>()), GoldenError);
}

}  // namespace
