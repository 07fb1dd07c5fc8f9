// eigenet/io/mnist.hpp — reads the four standard MNIST IDX files.
//
// IDX: a big-endian header — magic 0x00000803 (images) or 0x00000801 (labels), then the
// extents (count, and rows, cols for images) — followed by unsigned bytes, row-major.
// Images come back as (N, rows·cols) floats scaled to [0, 1] (pixel / 255), labels as
// int64 class indices, ready for Dense and SoftmaxCrossEntropy.
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "eigenet/tensor.hpp"

namespace eigenet::io {

template <typename Scalar = float>
struct Dataset {
  Tensor<Scalar, 2> images;          // (N, rows·cols), in [0, 1]
  std::vector<std::int64_t> labels;  // (N), in [0, 9]
  Index rows = 0, cols = 0;
  Index size() const { return static_cast<Index>(labels.size()); }
};

namespace detail {

inline std::vector<unsigned char> read_file(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) throw IoError("MNIST: cannot open " + path + ": no such file");
  if (!std::filesystem::is_regular_file(path, error))
    throw IoError("MNIST: " + path + " is not a regular file (a directory?); expected the uncompressed IDX file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("MNIST: cannot open " + path);
  std::vector<unsigned char> bytes;
  try {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception& read_error) {  // libstdc++ throws from the stream buffer
    throw IoError("MNIST: cannot read " + path + ": " + read_error.what());
  }
  if (in.bad()) throw IoError("MNIST: cannot read " + path);
  return bytes;
}

inline std::uint32_t big_endian32(const std::vector<unsigned char>& bytes, std::size_t at) {
  return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) | (std::uint32_t{bytes[at + 2]} << 8) |
         std::uint32_t{bytes[at + 3]};
}

/// Checks the magic number and the size, returns the extents.
inline std::vector<std::uint32_t> idx_header(const std::vector<unsigned char>& bytes, std::uint32_t magic,
                                             std::size_t dims, const std::string& path) {
  const std::size_t header = 4 + 4 * dims;
  if (bytes.size() < header)
    throw IoError(
        eigenet::detail::concat("MNIST: ", path, " is too short for an IDX header (", bytes.size(), " bytes)"));
  if (big_endian32(bytes, 0) != magic)
    throw IoError(eigenet::detail::concat("MNIST: ", path, " has magic number 0x", std::hex, big_endian32(bytes, 0),
                                          ", expected 0x", magic, " (is it an uncompressed IDX file?)"));
  std::vector<std::uint32_t> extents;
  std::uint64_t payload = 1;
  for (std::size_t d = 0; d < dims; ++d) {
    extents.push_back(big_endian32(bytes, 4 + 4 * d));
    // Three 32-bit extents can overflow 64 bits: (4, 2^31, 2^31) would wrap to 0 bytes and
    // pass the size check below with a 16-byte file.
    if (extents.back() != 0 && payload > std::numeric_limits<std::uint64_t>::max() / extents.back())
      throw IoError(eigenet::detail::concat("MNIST: ", path, " declares extents whose product overflows"));
    payload *= extents.back();
  }
  if (bytes.size() != header + payload)
    throw IoError(eigenet::detail::concat("MNIST: ", path, " should hold ", header + payload,
                                          " bytes for its header, has ", bytes.size()));
  return extents;
}

}  // namespace detail

/// Reads `<dir>/<prefix>-images-idx3-ubyte` and `<dir>/<prefix>-labels-idx1-ubyte`;
/// prefix "train" or "t10k".
template <typename Scalar = float>
Dataset<Scalar> load_mnist(const std::string& dir, const std::string& prefix) {
  const std::string image_path = dir + "/" + prefix + "-images-idx3-ubyte";
  const std::string label_path = dir + "/" + prefix + "-labels-idx1-ubyte";
  const auto image_bytes = detail::read_file(image_path);
  const auto label_bytes = detail::read_file(label_path);
  const auto image_dims = detail::idx_header(image_bytes, 0x00000803U, 3, image_path);
  const auto label_dims = detail::idx_header(label_bytes, 0x00000801U, 1, label_path);
  if (image_dims[0] != label_dims[0])
    throw IoError(eigenet::detail::concat("MNIST: ", image_path, " holds ", image_dims[0], " images but ", label_path,
                                          " holds ", label_dims[0], " labels"));
  Dataset<Scalar> data;
  const Index count = image_dims[0];
  data.rows = image_dims[1];
  data.cols = image_dims[2];
  const Index pixels = data.rows * data.cols;
  data.images = Tensor<Scalar, 2>(count, pixels);
  const unsigned char* source = image_bytes.data() + 16;
  for (Index i = 0; i < count * pixels; ++i) data.images.data()[i] = static_cast<Scalar>(source[i]) / Scalar(255);
  data.labels.resize(static_cast<std::size_t>(count));
  for (Index i = 0; i < count; ++i) {
    const unsigned char label = label_bytes[8 + static_cast<std::size_t>(i)];
    if (label > 9)
      throw IoError(eigenet::detail::concat("MNIST: ", label_path, " has label ", int{label}, " at position ", i,
                                            "; labels are 0 to 9"));
    data.labels[static_cast<std::size_t>(i)] = label;
  }
  return data;
}

}  // namespace eigenet::io
