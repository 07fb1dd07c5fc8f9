// eigenet/model/sequential.hpp — a chain of layers that owns them.
//
// Sequential is itself a Layer, so it nests. It owns its layers through unique_ptr
// (movable, not copyable; layers never move in memory, so references and an optimiser's
// parameter pointers survive a move of the model), passes train()/eval() to every layer, and keeps one
// reusable buffer per intermediate activation plus two for gradients, so a training loop
// with a fixed batch shape allocates nothing after its first step.
//
//   forward:  a_0 = x,  a_{i+1} = layer_i(a_i);  returns a_L
//   backward: walks the layers in reverse; layer i gets its own input a_i back (the
//             activations stay in the buffers), so no layer copies its input.
// The first layer is asked for no input gradient unless the caller wants dx.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eigenet/layers/layer.hpp"

namespace eigenet {

template <typename Scalar>
class Sequential : public Layer<Scalar> {
 public:
  Sequential() = default;
  Sequential(Sequential&&) noexcept = default;
  /// Takes over `other`'s layers; this model's own layers are destroyed, so an optimiser
  /// built over them must be rebuilt (layers themselves are not assignable, see layer.hpp).
  Sequential& operator=(Sequential&& other) noexcept {
    if (this != &other) {
      Layer<Scalar>::set_training(other.is_training());
      layers_ = std::move(other.layers_);
      activations_ = std::move(other.activations_);
      grad_a_ = std::move(other.grad_a_);
      grad_b_ = std::move(other.grad_b_);
      this->last_input_ = std::move(other.last_input_);
      other.layers_.clear();
      other.activations_.clear();
      other.last_input_.reset();
    }
    return *this;
  }
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;
  ~Sequential() override = default;

  /// Constructs a layer in place at the end and returns it: model.add<Dense<float>>(784, 64).
  template <typename LayerType, typename... Args>
  LayerType& add(Args&&... args) {
    static_assert(std::is_base_of_v<Layer<Scalar>, LayerType>, "Sequential<Scalar> holds Layer<Scalar>s");
    auto layer = std::make_unique<LayerType>(std::forward<Args>(args)...);
    LayerType& ref = *layer;
    add(std::move(layer));
    return ref;
  }

  /// Appends a layer; the layer takes the mode of the Sequential.
  Layer<Scalar>& add(std::unique_ptr<Layer<Scalar>> layer) {
    if (!layer) throw ValueError("Sequential::add: layer is null");
    layer->set_training(this->is_training());
    layers_.push_back(std::move(layer));
    activations_.resize(layers_.size());
    this->last_input_.reset();
    return *layers_.back();
  }

  std::size_t size() const { return layers_.size(); }
  bool empty() const { return layers_.empty(); }

  Layer<Scalar>& operator[](std::size_t i) { return *layers_[checked_index(i, "operator[]")]; }
  const Layer<Scalar>& operator[](std::size_t i) const { return *layers_[checked_index(i, "operator[]")]; }

  /// Layer i as its concrete type; throws if it is of another type.
  template <typename LayerType>
  LayerType& at(std::size_t i) {
    checked_index(i, "at");
    auto* typed = dynamic_cast<LayerType*>(layers_[i].get());
    if (!typed)
      throw ValueError(
          detail::concat("Sequential::at: layer ", i, " is ", layers_[i]->name(), ", not the type asked for"));
    return *typed;
  }

  std::string name() const override {
    std::string text = "Sequential(";
    for (std::size_t i = 0; i < layers_.size(); ++i) text += (i ? ", " : "") + layers_[i]->name();
    return text + ")";
  }

  /// A deep copy: every layer cloned, the mode kept; activation buffers start empty.
  std::unique_ptr<Layer<Scalar>> clone() const override { return std::make_unique<Sequential>(deep_copy()); }

  Sequential deep_copy() const {
    Sequential copy;
    copy.Layer<Scalar>::set_training(this->is_training());
    for (const auto& layer : layers_) {
      copy.layers_.push_back(layer->clone());
      copy.activations_.emplace_back();
    }
    return copy;
  }

  Shape output_shape(const Shape& input) const override {
    Shape shape = input;
    for (std::size_t i = 0; i < layers_.size(); ++i) shape = layer_output_shape(i, shape);
    return shape;
  }

  void set_training(bool training) override {
    Layer<Scalar>::set_training(training);
    for (auto& layer : layers_) layer->set_training(training);
  }

  /// Runs the chain and returns a view of the output, valid until the next forward.
  /// Every layer's shape is checked before any layer runs, so a shape error changes no
  /// state. A layer that throws for another reason (a NaN reaching a BatchNorm, a batch
  /// of one in training) leaves the layers before it run on this batch; backward then
  /// refuses until the next forward succeeds, rather than mix two batches' activations.
  ConstView<Scalar> forward_view(ConstView<Scalar> x) {
    this->last_input_.reset();
    if (layers_.empty()) throw StateError("Sequential: forward on an empty model");
    detail::check_storage(*this, x.data, x.shape, "x");
    std::vector<Shape> shapes;  // shapes[i]: output of layer i
    for (std::size_t i = 0; i < layers_.size(); ++i)
      shapes.push_back(layer_output_shape(i, i == 0 ? x.shape : shapes.back()));
    ConstView<Scalar> input = x;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      activations_[i].resize(shapes[i]);
      layers_[i]->forward_into(input, activations_[i].view());
      input = activations_[i].view();
    }
    this->last_input_ = x.shape;
    return input;
  }

  void forward_into(ConstView<Scalar> x, View<Scalar> y) override {
    detail::check_forward_shapes(*this, x, y);
    const ConstView<Scalar> out = forward_view(x);
    std::copy(out.data, out.data + out.size(), y.data);
  }

  void backward_into(ConstView<Scalar> x, ConstView<Scalar> dy, View<Scalar> dx) override {
    if (layers_.empty()) throw StateError("Sequential: backward on an empty model");
    detail::check_follows_forward(*this, this->last_input_, x);
    detail::check_backward_shapes(*this, x, dy, dx);
    ConstView<Scalar> grad_out = dy;
    for (std::size_t i = layers_.size(); i-- > 0;) {
      const ConstView<Scalar> input = i == 0 ? x : activations_[i - 1].view();
      View<Scalar> grad_in{nullptr, input.shape};
      if (i > 0) {
        Buffer<Scalar>& target = (layers_.size() - 1 - i) % 2 == 0 ? grad_a_ : grad_b_;
        target.resize(input.shape);
        grad_in = target.view();
      } else {
        grad_in = dx;
      }
      layers_[i]->backward_into(input, grad_out, grad_in);
      grad_out = grad_in;
    }
  }

  std::vector<Parameter<Scalar>> parameters() override {
    std::vector<Parameter<Scalar>> all;
    for (std::size_t i = 0; i < layers_.size(); ++i)
      for (auto p : layers_[i]->parameters()) {
        p.name = std::to_string(i) + "." + p.name;
        all.push_back(std::move(p));
      }
    return all;
  }

 private:
  std::size_t checked_index(std::size_t i, const char* what) const {
    if (i >= layers_.size())
      throw ValueError(
          detail::concat("Sequential::", what, ": index ", i, " is out of range for ", layers_.size(), " layers"));
    return i;
  }

  /// Layer i's output shape for `input`. Its ShapeError gains the layer's position, so a
  /// mismatch is located even between layers of the same name (two Dense(64 -> 64)).
  Shape layer_output_shape(std::size_t i, const Shape& input) const {
    try {
      return layers_[i]->output_shape(input);
    } catch (const ShapeError& error) {
      throw ShapeError(detail::concat("Sequential layer ", i, ": ", error.what()));
    }
  }

  std::vector<std::unique_ptr<Layer<Scalar>>> layers_;
  std::vector<Buffer<Scalar>> activations_;  // activations_[i]: output of layer i
  Buffer<Scalar> grad_a_, grad_b_;           // ping-pong gradient buffers
};

}  // namespace eigenet
