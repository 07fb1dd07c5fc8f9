// eigenet/layers/dense.hpp — fully connected layer, y = x · Wᵀ + b.
//
// Shapes as PyTorch's nn.Linear: x (N, in), weight W (out, in), bias b (out), y (N, out),
// so weights copy between the two element by element.
//   backward: dW += dyᵀ · x   (out, in),   db += Σ_n dy   (out),   dx = dy · W   (N, in)
// Initialisation (seedable, identical on every platform: drawn from eigenet's
// counter-based generator, not <random>'s implementation-defined distributions):
//   HeUniform     W ~ U(−√(6/in), √(6/in))          (Keras he_uniform; for ReLU nets)
//   GlorotUniform W ~ U(−√(6/(in+out)), √(6/(in+out)))  (Keras glorot_uniform)
//   b = 0.
// The products run on Eigen's matrix kernels (blocked GEMM, OpenMP-parallel when enabled).
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eigenet/kernels/random.hpp"
#include "eigenet/layers/layer.hpp"

namespace eigenet {

enum class Init { HeUniform, GlorotUniform };

template <typename Scalar>
class Dense : public Layer<Scalar> {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MatrixMap = Eigen::Map<Matrix>;
  using ConstMatrixMap = Eigen::Map<const Matrix>;
  using RowVectorMap = Eigen::Map<Eigen::Matrix<Scalar, 1, Eigen::Dynamic>>;

 public:
  Dense(Index in_features, Index out_features, Init init = Init::HeUniform, std::uint64_t seed = 0)
      : in_(in_features), out_(out_features) {
    if (in_features < 1 || out_features < 1)
      throw ValueError(detail::concat("Dense: in_features and out_features should be at least 1, not ", in_features,
                                      " and ", out_features));
    weight_ = Tensor<Scalar, 2>(out_, in_);
    weight_grad_ = Tensor<Scalar, 2>(out_, in_);
    weight_grad_.setZero();
    bias_ = Tensor<Scalar, 1>(out_);
    bias_.setZero();
    bias_grad_ = Tensor<Scalar, 1>(out_);
    bias_grad_.setZero();
    reset_parameters(init, seed);
  }

  /// Draws fresh weights (and zero bias) with the given scheme and seed.
  void reset_parameters(Init init, std::uint64_t seed) {
    const double fan_in = static_cast<double>(in_), fan_out = static_cast<double>(out_);
    const double bound = init == Init::HeUniform ? std::sqrt(6.0 / fan_in) : std::sqrt(6.0 / (fan_in + fan_out));
    const kernels::StreamKey key = kernels::stream_key(seed, 0x44656E7365ULL);  // stream "Dense"
    for (Index i = 0; i < weight_.size(); ++i)
      weight_.data()[i] =
          static_cast<Scalar>((2.0 * kernels::uniform01(key, static_cast<std::uint64_t>(i)) - 1.0) * bound);
    bias_.setZero();
  }

  std::string name() const override { return detail::concat("Dense(", in_, " -> ", out_, ")"); }
  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<Dense>(*this); }

  Shape output_shape(const Shape& input) const override {
    if (input.size() != 2 || input[1] != in_ || input[0] < 1)
      throw ShapeError(
          detail::concat(name(), ": input should have shape (N, ", in_, ") with N >= 1, not ", to_string(input)));
    return {input[0], out_};
  }

  void forward_into(ConstView<Scalar> x, View<Scalar> y) override {
    this->last_input_.reset();
    detail::check_forward_shapes(*this, x, y);
    const Index n = x.shape[0];
    MatrixMap out(y.data, n, out_);
    out.noalias() = ConstMatrixMap(x.data, n, in_) * ConstMatrixMap(weight_.data(), out_, in_).transpose();
    out.rowwise() += RowVectorMap(bias_.data(), out_);
    this->last_input_ = x.shape;
  }

  void backward_into(ConstView<Scalar> x, ConstView<Scalar> dy, View<Scalar> dx) override {
    detail::check_backward_shapes(*this, x, dy, dx);
    detail::check_follows_forward(*this, this->last_input_, x);
    const Index n = x.shape[0];
    const ConstMatrixMap grad(dy.data, n, out_);
    MatrixMap(weight_grad_.data(), out_, in_).noalias() += grad.transpose() * ConstMatrixMap(x.data, n, in_);
    RowVectorMap(bias_grad_.data(), out_) += grad.colwise().sum();
    if (dx.data != nullptr) MatrixMap(dx.data, n, in_).noalias() = grad * ConstMatrixMap(weight_.data(), out_, in_);
  }

  std::vector<Parameter<Scalar>> parameters() override {
    return {{"weight", weight_.data(), weight_grad_.data(), weight_.size()},
            {"bias", bias_.data(), bias_grad_.data(), bias_.size()}};
  }

  Index in_features() const { return in_; }
  Index out_features() const { return out_; }
  FixedShapeRef<Scalar, 2> weight() { return {weight_, *this, "weight"}; }  // (out, in)
  FixedShapeRef<Scalar, 1> bias() { return {bias_, *this, "bias"}; }        // (out)
  const Tensor<Scalar, 2>& weight() const { return weight_; }
  const Tensor<Scalar, 1>& bias() const { return bias_; }
  const Tensor<Scalar, 2>& weight_grad() const { return weight_grad_; }
  const Tensor<Scalar, 1>& bias_grad() const { return bias_grad_; }

 private:
  Index in_, out_;
  Tensor<Scalar, 2> weight_, weight_grad_;  // (out, in)
  Tensor<Scalar, 1> bias_, bias_grad_;      // (out)
};

}  // namespace eigenet
