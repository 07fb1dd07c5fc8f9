// The README's "Beyond the defaults" snippet, verbatim in the first block, then checks of
// what its comments claim. If this file changes, the README changes with it.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "eigenet/eigenet.hpp"

namespace {

TEST(ReadmeOptionsSnippet, DoesWhatItsCommentsSay) {
  using namespace eigenet;
  // --- the README snippet ---
  BatchNormOptions options;                  // PyTorch's defaults: eps 1e-5, momentum 0.1
  options.momentum = std::nullopt;           // cumulative average (PyTorch momentum=None)
  options.channel_axis = ChannelAxis::Last;  // (N, ..., C), Keras axis=-1
  options.virtual_batch_size = 32;           // ghost batch normalisation
  // also: eps, affine, track_running_stats, running_variance, single_value_batch
  BatchNorm<float> keras_bn(64, BatchNormOptions::keras());  // momentum 0.99 on the old value, eps 1e-3

  Sequential<float> model;
  model.add<Dense<float>>(784, 64, Init::HeUniform, /*seed=*/1);
  auto& bn = model.add<BatchNorm<float>>(64, options);
  model.add<ReLU<float>>();
  auto& drop = model.add<Dropout<float>>(0.3, /*seed=*/2, DropoutOptions::shared({0}));  // Keras noise_shape (1, 64)
  model.add<Dense<float>>(64, 10, Init::HeUniform, /*seed=*/3);
  // Dropout2d<float>(p, seed): whole channels of (N, C, H, W); AlphaDropout<float>: for SELU networks

  bn.freeze();                 // running statistics, γ and β fixed; model.train() does not undo it
  drop.set_monte_carlo(true);  // stays stochastic in eval()
  Tensor<float, 2> x(16, 784);
  x.setRandom();
  const auto prediction = monte_carlo_predict(model, x, /*passes=*/50);  // .mean, .variance: (16, 10)
  Sequential<float> deployed = fold_batchnorm(model);                    // Dense + BatchNorm -> one Dense
  // --- end of the snippet ---

  EXPECT_EQ(BatchNormOptions{}.eps, 1e-5);
  EXPECT_EQ(BatchNormOptions{}.momentum.value(), 0.1);
  EXPECT_NEAR(keras_bn.options().momentum.value(), 0.01, 1e-15);
  EXPECT_EQ(keras_bn.options().eps, 1e-3);
  EXPECT_EQ(drop.noise_shape({16, 64}), (Shape{1, 64}));

  model.train();
  EXPECT_TRUE(bn.is_frozen());
  EXPECT_FALSE(bn.uses_batch_statistics());
  for (const auto& p : bn.parameters()) EXPECT_TRUE(p.is_frozen()) << p.name;
  model.eval();
  EXPECT_TRUE(drop.is_monte_carlo());
  EXPECT_TRUE(drop.is_stochastic());

  ASSERT_EQ(prediction.mean.dimension(0), 16);
  ASSERT_EQ(prediction.mean.dimension(1), 10);
  ASSERT_EQ(prediction.variance.dimension(1), 10);
  EXPECT_EQ(prediction.passes, 50);
  bool some_variance = false;
  for (Index i = 0; i < prediction.variance.size(); ++i) {
    EXPECT_TRUE(std::isfinite(prediction.variance.data()[i]) && prediction.variance.data()[i] >= 0.0f);
    some_variance = some_variance || prediction.variance.data()[i] > 0.0f;
  }
  EXPECT_TRUE(some_variance) << "Monte-Carlo dropout should vary between passes";

  ASSERT_EQ(deployed.size(), 4u);  // Dense, ReLU, Dropout, Dense: the BatchNorm is folded away
  EXPECT_EQ(deployed[0].name(), "Dense(784 -> 64)");
  // The folded model is a deep copy of everything else, the Monte-Carlo flag included; without
  // it, the folded model equals the original in inference.
  EXPECT_TRUE(deployed.at<Dropout<float>>(2).is_monte_carlo());
  deployed.at<Dropout<float>>(2).set_monte_carlo(false);
  drop.set_monte_carlo(false);
  model.eval();
  const Tensor<float, 2> expected = model.forward(x);
  const Tensor<float, 2> got = deployed.forward(x);
  float scale = 0.0f;
  for (Index i = 0; i < expected.size(); ++i) scale = std::max(scale, std::abs(expected.data()[i]));
  for (Index i = 0; i < expected.size(); ++i) EXPECT_NEAR(got.data()[i], expected.data()[i], 1e-5f * scale) << i;
}

}  // namespace
