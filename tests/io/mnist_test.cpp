// Behaviour of eigenet::io::load_mnist on small IDX files written by the test: a good file
// round-trips, and every kind of bad file (missing, wrong magic, short, truncated, too long,
// label above 9, image/label count mismatch, overflowing extents) throws IoError naming the
// file.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"
#include "support/checks.hpp"

namespace {

namespace fs = std::filesystem;
using eigenet::Index;
using eigenet::io::load_mnist;
using eigenet::testing::contains;
using eigenet::testing::message_of;

using Bytes = std::vector<unsigned char>;

void append_big_endian(Bytes& bytes, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<unsigned char>(value >> shift));
}

Bytes image_file(std::uint32_t count, std::uint32_t rows, std::uint32_t cols, const Bytes& pixels,
                 std::uint32_t magic = 0x00000803U) {
  Bytes bytes;
  append_big_endian(bytes, magic);
  append_big_endian(bytes, count);
  append_big_endian(bytes, rows);
  append_big_endian(bytes, cols);
  bytes.insert(bytes.end(), pixels.begin(), pixels.end());
  return bytes;
}

Bytes label_file(const Bytes& labels, std::uint32_t magic = 0x00000801U) {
  Bytes bytes;
  append_big_endian(bytes, magic);
  append_big_endian(bytes, static_cast<std::uint32_t>(labels.size()));
  bytes.insert(bytes.end(), labels.begin(), labels.end());
  return bytes;
}

/// Three 2×3 images and their labels.
const Bytes kPixels{0, 255, 128, 1, 2, 3, 10, 20, 30, 40, 50, 60, 255, 254, 253, 252, 251, 0};
const Bytes kLabels{7, 0, 9};

class Mnist : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("eigenet_mnist_test_" + std::string(test->name()) + "_" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::string dir() const { return dir_.string(); }
  std::string images_path() const { return (dir_ / "tiny-images-idx3-ubyte").string(); }
  std::string labels_path() const { return (dir_ / "tiny-labels-idx1-ubyte").string(); }

  static void write(const std::string& path, const Bytes& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << "cannot write " << path;
  }
  void write_pair(const Bytes& images, const Bytes& labels) const {
    write(images_path(), images);
    write(labels_path(), labels);
  }
  /// The IoError message of loading the "tiny" pair.
  std::string load_error() const {
    return message_of<eigenet::IoError>([&] { load_mnist<float>(dir(), "tiny"); });
  }

 private:
  fs::path dir_;
};

TEST_F(Mnist, AGoodTinyFileRoundTrips) {
  write_pair(image_file(3, 2, 3, kPixels), label_file(kLabels));
  const auto data = load_mnist<float>(dir(), "tiny");
  EXPECT_EQ(data.size(), 3);
  EXPECT_EQ(data.rows, 2);
  EXPECT_EQ(data.cols, 3);
  ASSERT_EQ(data.images.dimension(0), 3);
  ASSERT_EQ(data.images.dimension(1), 6);
  for (Index i = 0; i < 18; ++i)
    EXPECT_EQ(data.images.data()[i], static_cast<float>(kPixels[static_cast<std::size_t>(i)]) / 255.0f) << i;
  EXPECT_EQ(data.images(0, 1), 1.0f);
  EXPECT_EQ(data.images(0, 0), 0.0f);
  EXPECT_EQ(data.labels, (std::vector<std::int64_t>{7, 0, 9}));

  const auto as_double = load_mnist<double>(dir(), "tiny");
  EXPECT_DOUBLE_EQ(as_double.images(1, 2), 30.0 / 255.0);
}

TEST_F(Mnist, AnEmptySetLoads) {
  write_pair(image_file(0, 28, 28, {}), label_file({}));
  const auto data = load_mnist<float>(dir(), "tiny");
  EXPECT_EQ(data.size(), 0);
  EXPECT_EQ(data.images.dimension(1), 784);
}

TEST_F(Mnist, MissingFilesAreNamed) {
  EXPECT_TRUE(contains(load_error(), images_path()));
  write(images_path(), image_file(3, 2, 3, kPixels));
  EXPECT_TRUE(contains(load_error(), labels_path()));
  const std::string message =
      message_of<eigenet::IoError>([&] { load_mnist<float>(dir() + "/no/such/folder", "train"); });
  EXPECT_TRUE(contains(message, dir() + "/no/such/folder/train-images-idx3-ubyte"));
}

// Kaggle's MNIST download unpacks every IDX file into a folder of the same name: a clear
// IoError naming the path, not libstdc++'s "basic_filebuf::underflow" from the stream.
TEST_F(Mnist, AFolderWhereAFileShouldBeIsNamed) {
  std::filesystem::create_directories(images_path());
  const std::string message = load_error();
  EXPECT_TRUE(contains(message, images_path()));
  EXPECT_TRUE(contains(message, "not a regular file"));
}

TEST_F(Mnist, AWrongMagicNumberIsNamed) {
  // A label file where the images should be.
  write_pair(image_file(3, 2, 3, kPixels, 0x00000801U), label_file(kLabels));
  std::string message = load_error();
  EXPECT_TRUE(contains(message, images_path()));
  EXPECT_TRUE(contains(message, "magic"));
  // A still gzip-compressed file.
  write_pair(image_file(3, 2, 3, kPixels, 0x1F8B0808U), label_file(kLabels));
  EXPECT_TRUE(contains(load_error(), images_path()));
  // An image file where the labels should be.
  write_pair(image_file(3, 2, 3, kPixels), image_file(3, 2, 3, kPixels));
  message = load_error();
  EXPECT_TRUE(contains(message, labels_path()));
  EXPECT_TRUE(contains(message, "magic"));
}

TEST_F(Mnist, AFileTooShortForItsHeaderIsNamed) {
  write_pair({0, 0, 8, 3, 0, 0, 0}, label_file(kLabels));
  std::string message = load_error();
  EXPECT_TRUE(contains(message, images_path()));
  EXPECT_TRUE(contains(message, "too short"));
  write_pair(image_file(3, 2, 3, kPixels), {});
  EXPECT_TRUE(contains(load_error(), labels_path()));
}

TEST_F(Mnist, TruncatedOrOverlongFilesAreNamed) {
  const Bytes short_pixels(kPixels.begin(), kPixels.end() - 1);
  write_pair(image_file(3, 2, 3, short_pixels), label_file(kLabels));
  std::string message = load_error();
  EXPECT_TRUE(contains(message, images_path()));
  EXPECT_TRUE(contains(message, "34"));  // the size its header implies
  EXPECT_TRUE(contains(message, "33"));  // the size it has

  Bytes long_pixels = kPixels;
  long_pixels.push_back(0);
  write_pair(image_file(3, 2, 3, long_pixels), label_file(kLabels));
  EXPECT_TRUE(contains(load_error(), images_path()));

  Bytes labels = label_file(kLabels);
  labels.pop_back();
  write_pair(image_file(3, 2, 3, kPixels), labels);
  EXPECT_TRUE(contains(load_error(), labels_path()));
}

TEST_F(Mnist, ALabelAboveNineIsNamedWithItsPosition) {
  write_pair(image_file(3, 2, 3, kPixels), label_file({7, 10, 9}));
  const std::string message = load_error();
  EXPECT_TRUE(contains(message, labels_path()));
  EXPECT_TRUE(contains(message, "label 10"));
  EXPECT_TRUE(contains(message, "position 1"));
  write_pair(image_file(3, 2, 3, kPixels), label_file({7, 0, 255}));
  EXPECT_TRUE(contains(load_error(), "label 255"));
}

TEST_F(Mnist, AnImageLabelCountMismatchNamesBothFiles) {
  write_pair(image_file(3, 2, 3, kPixels), label_file({7, 0}));
  const std::string message = load_error();
  EXPECT_TRUE(contains(message, images_path()));
  EXPECT_TRUE(contains(message, labels_path()));
  EXPECT_TRUE(contains(message, "3 images"));
  EXPECT_TRUE(contains(message, "2 labels"));
}

TEST_F(Mnist, ExtentsWhoseProductOverflowsAreRejected) {
  // 4 · 2^31 · 2^31 = 2^64 wraps to 0 bytes: a 16-byte file must not pass as 4 images of
  // 2^62 pixels each.
  write_pair(image_file(4, 1U << 31, 1U << 31, {}), label_file({1, 2, 3, 4}));
  const std::string message = load_error();
  EXPECT_TRUE(contains(message, images_path()));
  EXPECT_TRUE(contains(message, "overflow"));
}

}  // namespace
