// End to end on the real MNIST files: Dense 784→64, ReLU, BatchNorm(64), Dense 64→10 in
// float, trained with Adam (lr 1e-3) for 300 steps of 32 images from the first 6000
// training images, then evaluated in inference mode on the first 2000 test images.
//
// Passes when the loss falls (mean of the last 50 steps below half the mean of the first
// 50) and test accuracy rises from chance (< 0.3 before training) to > 0.85. With the
// files absent the test is SKIPPED with instructions, never faked. About a second in
// Release.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "eigenet/eigenet.hpp"

namespace {

using eigenet::Index;
using eigenet::Tensor;
using Scalar = float;

constexpr Index kTrainImages = 6000, kTestImages = 2000, kBatch = 32, kPixels = 784;
constexpr int kSteps = 300, kWindow = 50;

bool mnist_present(const std::string& dir) {
  for (const char* name :
       {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    if (!std::ifstream(dir + "/" + name)) return false;
  return true;
}

/// The first `count` samples of a dataset.
eigenet::io::Dataset<Scalar> head(const eigenet::io::Dataset<Scalar>& data, Index count) {
  eigenet::io::Dataset<Scalar> slice;
  slice.rows = data.rows;
  slice.cols = data.cols;
  const Index pixels = data.images.dimension(1);
  slice.images = Tensor<Scalar, 2>(count, pixels);
  std::copy(data.images.data(), data.images.data() + count * pixels, slice.images.data());
  slice.labels.assign(data.labels.begin(), data.labels.begin() + count);
  return slice;
}

/// Fraction of `data` classified correctly, in inference mode (batches of 500).
double accuracy(eigenet::Sequential<Scalar>& model, const eigenet::io::Dataset<Scalar>& data) {
  const bool was_training = model.is_training();
  model.eval();
  const Index batch = 500;
  Index correct = 0;
  for (Index begin = 0; begin < data.size(); begin += batch) {
    const Index n = std::min(batch, data.size() - begin);
    const eigenet::ConstView<Scalar> x{data.images.data() + begin * kPixels, {n, kPixels}};
    const auto predicted = eigenet::argmax_rows(model.forward_view(x));
    for (Index i = 0; i < n; ++i)
      correct += predicted[static_cast<std::size_t>(i)] == data.labels[static_cast<std::size_t>(begin + i)];
  }
  model.set_training(was_training);
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

double mean(const std::vector<double>& values, std::size_t begin, std::size_t end) {
  return std::accumulate(values.begin() + static_cast<std::ptrdiff_t>(begin),
                         values.begin() + static_cast<std::ptrdiff_t>(end), 0.0) /
         static_cast<double>(end - begin);
}

TEST(MnistTraining, SmallBatchNormMlpLearnsRealMnist) {
  const std::string dir = EIGENET_MNIST_DIR;
  if (!mnist_present(dir))
    GTEST_SKIP() << "the MNIST IDX files are not in " << dir
                 << ": run scripts/setup.sh to fetch and verify them (or configure with "
                    "-DEIGENET_MNIST_DIR=<folder holding the four files>)";

  const auto started = std::chrono::steady_clock::now();
  const auto full_train = eigenet::io::load_mnist<Scalar>(dir, "train");
  const auto full_test = eigenet::io::load_mnist<Scalar>(dir, "t10k");
  ASSERT_EQ(full_train.size(), 60000);
  ASSERT_EQ(full_test.size(), 10000);
  ASSERT_EQ(full_train.images.dimension(1), kPixels);
  const auto train = head(full_train, kTrainImages);
  const auto test = head(full_test, kTestImages);
  const auto loaded = std::chrono::steady_clock::now();

  eigenet::Sequential<Scalar> model;
  model.add<eigenet::Dense<Scalar>>(kPixels, 64, eigenet::Init::HeUniform, 1);
  model.add<eigenet::ReLU<Scalar>>();
  auto& bn = model.add<eigenet::BatchNorm<Scalar>>(64);
  model.add<eigenet::Dense<Scalar>>(64, 10, eigenet::Init::HeUniform, 2);
  eigenet::Adam<Scalar> adam(model.parameters(), {1e-3});
  eigenet::SoftmaxCrossEntropy<Scalar> loss;

  const double accuracy_before = accuracy(model, test);
  EXPECT_LT(accuracy_before, 0.3) << "an untrained network should be near chance";
  EXPECT_TRUE(model.is_training()) << "evaluation must hand back a training model";

  // Consecutive batches through the slice, wrapping around (MNIST's order is already mixed).
  Tensor<Scalar, 2> x(kBatch, kPixels);
  std::vector<std::int64_t> labels(kBatch);
  std::vector<double> losses;
  for (int step = 0; step < kSteps; ++step) {
    for (Index i = 0; i < kBatch; ++i) {
      const Index sample = (static_cast<Index>(step) * kBatch + i) % kTrainImages;
      std::copy(train.images.data() + sample * kPixels, train.images.data() + (sample + 1) * kPixels,
                x.data() + i * kPixels);
      labels[static_cast<std::size_t>(i)] = train.labels[static_cast<std::size_t>(sample)];
    }
    adam.zero_grad();
    const auto logits = model.forward_view({x.data(), {kBatch, kPixels}});
    const double value = loss.forward(logits, labels.data(), kBatch);
    ASSERT_TRUE(std::isfinite(value)) << "step " << step;
    losses.push_back(value);
    const auto grad = loss.backward();
    model.backward_into({x.data(), {kBatch, kPixels}}, {grad.data(), {kBatch, 10}}, {nullptr, {kBatch, kPixels}});
    adam.step();
  }
  EXPECT_EQ(bn.num_batches_tracked(), kSteps);

  const double first = mean(losses, 0, kWindow), last = mean(losses, kSteps - kWindow, kSteps);
  EXPECT_LT(last, 0.5 * first) << "mean loss of the first " << kWindow << " steps " << first << ", of the last "
                               << last;
  const double accuracy_after = accuracy(model, test);
  EXPECT_GT(accuracy_after, 0.85);

  const auto finished = std::chrono::steady_clock::now();
  const auto seconds = [](auto from, auto to) { return std::chrono::duration<double>(to - from).count(); };
  std::cout << "[ MNIST    ] loss " << first << " -> " << last << ", test accuracy " << accuracy_before << " -> "
            << accuracy_after << "; load " << seconds(started, loaded) << " s, train+eval " << seconds(loaded, finished)
            << " s\n";
  RecordProperty("accuracy_after", std::to_string(accuracy_after));
}

}  // namespace
