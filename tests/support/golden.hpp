// tests/support/golden.hpp — reads the golden files that tests/golden/generate.py writes
// from PyTorch, and compares arrays against them.
//
// File format (one file per case; documented also at the top of generate.py):
//   # comment                     lines starting with '#' and blank lines are ignored
//   NAME EXTENT... : VALUE...     one array per line: NAME is [A-Za-z0-9_]+, the EXTENTs
//                                 (zero or more non-negative integers, outermost first)
//                                 give the shape, none meaning a scalar; after a lone ':'
//                                 come exactly prod(EXTENTs) values in row-major order,
//                                 written as Python's repr of a float64 (read back exactly).
// Files live in EIGENET_GOLDEN_DIR (tests/golden, defined by tests/CMakeLists.txt). A
// missing file, a malformed line or a missing array throws GoldenError naming the file,
// the line and what was wrong.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "eigenet/tensor.hpp"

#ifndef EIGENET_GOLDEN_DIR
#error "EIGENET_GOLDEN_DIR must name the folder of the golden files (tests/CMakeLists.txt defines it)"
#endif

namespace eigenet::testing {

class GoldenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One array of a golden file: its shape and its values as doubles, row-major.
struct GoldenArray {
  Shape shape;
  std::vector<double> values;

  Index size() const { return static_cast<Index>(values.size()); }

  /// The values converted to Scalar (exact for the float32-representable inputs).
  template <typename Scalar>
  std::vector<Scalar> as() const {
    return std::vector<Scalar>(values.begin(), values.end());
  }

  /// A row-major eigenet tensor of this array's shape; throws unless the rank is Rank.
  template <typename Scalar, int Rank>
  Tensor<Scalar, Rank> tensor(const std::string& what = "array") const {
    if (static_cast<int>(shape.size()) != Rank)
      throw GoldenError(what + " has shape " + to_string(shape) + ", not of rank " + std::to_string(Rank));
    Eigen::array<Index, Rank> dims;
    for (int i = 0; i < Rank; ++i) dims[static_cast<std::size_t>(i)] = shape[static_cast<std::size_t>(i)];
    Tensor<Scalar, Rank> out(dims);
    std::copy(values.begin(), values.end(), out.data());
    return out;
  }
};

class GoldenFile {
 public:
  /// Reads EIGENET_GOLDEN_DIR/<name>.txt.
  explicit GoldenFile(const std::string& name) : GoldenFile(EIGENET_GOLDEN_DIR, name) {}

  /// Reads <folder>/<name>.txt.
  GoldenFile(const std::string& folder, const std::string& name) : path_(folder + "/" + name + ".txt") {
    std::ifstream in(path_);
    if (!in)
      throw GoldenError("golden file " + path_ +
                        " cannot be opened; regenerate it with /usr/bin/python3 tests/golden/generate.py");
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
      ++number;
      const auto first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos || line[first] == '#') continue;
      parse_line(line, number);
    }
    if (arrays_.empty()) throw GoldenError("golden file " + path_ + " holds no arrays");
  }

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return arrays_.count(name) != 0; }

  const GoldenArray& operator[](const std::string& name) const {
    const auto found = arrays_.find(name);
    if (found == arrays_.end()) throw GoldenError("golden file " + path_ + " has no array \"" + name + "\"");
    return found->second;
  }

  /// The value of a scalar (an array with no extents).
  double scalar(const std::string& name) const {
    const GoldenArray& array = (*this)[name];
    if (!array.shape.empty())
      throw GoldenError("golden file " + path_ + ": \"" + name + "\" has shape " + to_string(array.shape) +
                        ", expected a scalar");
    return array.values.front();
  }

 private:
  [[noreturn]] void fail(int line, const std::string& what) const {
    throw GoldenError("golden file " + path_ + ", line " + std::to_string(line) + ": " + what);
  }

  void parse_line(const std::string& line, int number) {
    std::istringstream tokens(line);
    std::string name, token;
    tokens >> name;
    if (name.empty() ||
        !std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) != 0 || c == '_'; }))
      fail(number, "expected an array name of [A-Za-z0-9_], not \"" + name + "\"");
    if (arrays_.count(name) != 0) fail(number, "array \"" + name + "\" appears twice");
    GoldenArray array;
    bool colon = false;
    while (tokens >> token) {
      if (token == ":") {
        colon = true;
        break;
      }
      const long long extent = parse_integer(token);
      if (extent < 0) fail(number, "extent \"" + token + "\" of \"" + name + "\" is not a non-negative integer");
      array.shape.push_back(static_cast<Index>(extent));
    }
    if (!colon) fail(number, "array \"" + name + "\" has no ':' between its shape and its values");
    while (tokens >> token) {
      errno = 0;
      char* end = nullptr;
      const double value = std::strtod(token.c_str(), &end);
      if (end != token.c_str() + token.size() || errno == ERANGE || !std::isfinite(value))
        fail(number, "value \"" + token + "\" of \"" + name + "\" is not a finite number");
      array.values.push_back(value);
    }
    if (array.size() != element_count(array.shape))
      fail(number, "array \"" + name + "\" of shape " + to_string(array.shape) + " should have " +
                       std::to_string(element_count(array.shape)) + " values, not " + std::to_string(array.size()));
    arrays_.emplace(name, std::move(array));
  }

  static long long parse_integer(const std::string& token) {
    if (token.empty() || token.size() > 12 ||
        !std::all_of(token.begin(), token.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
      return -1;
    return std::stoll(token);
  }

  std::string path_;
  std::map<std::string, GoldenArray> arrays_;
};

/// How far a value may be from its golden value:
///   |actual − expected| <= abs + rel · |expected| + of_scale · max |expected over the array|.
/// `of_scale` expresses "k ulps of the array's magnitude": a value that cancels to near zero
/// (a gradient sum) carries the rounding error of its O(scale) terms, not of itself.
struct Tolerance {
  double abs = 0.0;
  double rel = 0.0;
  double of_scale = 0.0;
};

/// Compares `count` values with a golden array element by element; every mismatch (up to
/// five reported) is a gtest failure naming `what`, the index and both values. Returns the
/// number of mismatches.
template <typename Scalar>
int expect_close(const Scalar* actual, Index count, const GoldenArray& expected, Tolerance tolerance,
                 const std::string& what) {
  if (count != expected.size()) {
    ADD_FAILURE() << what << ": " << count << " values, golden has " << expected.size() << " (shape "
                  << to_string(expected.shape) << ")";
    return 1;
  }
  double scale = 0.0;
  for (double value : expected.values) scale = std::max(scale, std::abs(value));
  const double floor = tolerance.abs + tolerance.of_scale * scale;
  int mismatches = 0;
  double worst = 0.0;
  Index worst_at = 0;
  for (Index i = 0; i < count; ++i) {
    const double got = static_cast<double>(actual[i]);
    const double want = expected.values[static_cast<std::size_t>(i)];
    const double error = std::abs(got - want);
    const double allowed = floor + tolerance.rel * std::abs(want);
    if (!(error <= allowed)) {  // also catches NaN
      if (++mismatches <= 5)
        ADD_FAILURE() << std::setprecision(17) << what << "[" << i << "]: eigenet gives " << got << ", PyTorch " << want
                      << " (error " << error << ", allowed " << allowed << ")";
    }
    if (error > worst) {
      worst = error;
      worst_at = i;
    }
  }
  if (mismatches > 5)
    ADD_FAILURE() << what << ": " << mismatches << " of " << count << " values differ; largest error " << worst
                  << " at " << worst_at;
  return mismatches;
}

template <typename Container>
int expect_close(const Container& actual, const GoldenArray& expected, Tolerance tolerance, const std::string& what) {
  return expect_close(actual.data(), static_cast<Index>(actual.size()), expected, tolerance, what);
}

}  // namespace eigenet::testing
