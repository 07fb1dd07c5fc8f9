// eigenet/layers/relu.hpp — y = max(x, 0); dx = dy where x > 0, else 0 (PyTorch's
// choice of 0 for the subgradient at x = 0). NaN stays NaN, as in PyTorch: a NaN that
// reached this layer must not turn into a plausible 0 and hide upstream breakage.
#pragma once

#include <memory>
#include <string>

#include "eigenet/kernels/parallel.hpp"
#include "eigenet/layers/layer.hpp"

namespace eigenet {

template <typename Scalar>
class ReLU : public Layer<Scalar> {
 public:
  std::string name() const override { return "ReLU"; }
  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<ReLU>(*this); }
  Shape output_shape(const Shape& input) const override { return input; }

  void forward_into(ConstView<Scalar> x, View<Scalar> y) override {
    this->last_input_.reset();
    detail::check_forward_shapes(*this, x, y);
    kernels::parallel_chunks(x.size(), Index{1} << 16, [&](Index, Index begin, Index end) {
      for (Index i = begin; i < end; ++i) y.data[i] = x.data[i] < Scalar(0) ? Scalar(0) : x.data[i];
    });
    this->last_input_ = x.shape;
  }

  void backward_into(ConstView<Scalar> x, ConstView<Scalar> dy, View<Scalar> dx) override {
    detail::check_backward_shapes(*this, x, dy, dx);
    detail::check_follows_forward(*this, this->last_input_, x);
    if (dx.data == nullptr) return;
    kernels::parallel_chunks(x.size(), Index{1} << 16, [&](Index, Index begin, Index end) {
      for (Index i = begin; i < end; ++i) dx.data[i] = x.data[i] > Scalar(0) ? dy.data[i] : Scalar(0);
    });
  }
};

}  // namespace eigenet
