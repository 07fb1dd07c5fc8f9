// eigenet/layers/layer.hpp — what every layer is: state around a forward/backward pair.
//
// Contract of every layer (dlib's habit: written beside the interface):
//   forward(x)          requires x of a shape the layer accepts (else ShapeError);
//                       returns y; in training mode may update running state.
//   backward(x, dy)     requires x to be the input of the most recent forward and dy of
//                       the shape that forward returned (else ShapeError / StateError);
//                       returns dx and ADDS the parameter gradients into grad
//                       (accumulation over micro-batches works; zero_grad() resets).
//                       Backward uses the mode of the forward it follows.
//   train() / eval()    switch the mode; layers start in training mode, as in PyTorch.
//                       A layer may hold a mode of its own that a parent's train()/eval()
//                       does not undo (a frozen BatchNorm, a Monte-Carlo Dropout).
//   clone()             a deep copy: parameters, gradients, running state and mode; the
//                       copy shares nothing with the original.
//   assignment          deleted: an optimiser holds the addresses of a layer's parameters
//                       (Parameter::value, ::grad), and assigning a layer over another
//                       would free or move them under it. Copy-construct (or clone()) instead.
//                       Tensors a layer owns (weight(), running_var(), ...) come as a
//                       FixedShapeRef: values may be written or assigned, never the storage
//                       or the shape replaced.
//
// x is passed to backward again (llm.c's convention: inputs are explicit arguments), so a
// layer keeps only O(parameters) state between the two calls, never a copy of its input.
//
// The typed API (forward/backward on eigenet::Tensor or TensorMap of any rank) wraps the
// rank-erased one (forward_into/backward_into on ConstView/View) that Sequential uses.
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eigenet/tensor.hpp"

namespace eigenet {

/// A trainable tensor of a layer: its values and the gradient that backward adds into.
template <typename Scalar>
struct Parameter {
  std::string name;  // e.g. "weight", "bias"; Sequential prefixes "3." for layer 3
  Scalar* value = nullptr;
  Scalar* grad = nullptr;
  Index size = 0;
  // The owning layer's flag for "held fixed" (a frozen BatchNorm's γ and β), read at every
  // optimiser step, so freezing after the optimiser was built still takes effect. Null:
  // always trainable.
  const bool* frozen = nullptr;

  bool is_frozen() const { return frozen != nullptr && *frozen; }
};

template <typename Scalar>
class Layer;

namespace detail {

/// Whether T is an Eigen tensor, map or expression of the given scalar type and rank, in
/// row-major order: what a FixedShapeRef may be assigned from.
template <typename T, typename Scalar, int Rank, typename = void>
struct is_tensor_like : std::false_type {};
template <typename T, typename Scalar, int Rank>
struct is_tensor_like<
    T, Scalar, Rank,
    std::enable_if_t<std::is_class_v<T> && std::is_base_of_v<Eigen::TensorBase<T, Eigen::ReadOnlyAccessors>, T>>>
    : std::bool_constant<
          static_cast<int>(Eigen::internal::traits<T>::NumDimensions) == Rank &&
          std::is_same_v<std::remove_const_t<typename Eigen::internal::traits<T>::Scalar>, Scalar>&& static_cast<int>(
              Eigen::internal::traits<T>::Layout) == static_cast<int>(Eigen::RowMajor)> {};
template <typename T, typename Scalar, int Rank>
inline constexpr bool is_tensor_like_v = is_tensor_like<T, Scalar, Rank>::value;

}  // namespace detail

/// Writable access to a tensor a layer owns (its weight, bias, running statistics) whose
/// storage and shape must not change: an optimiser holds the tensor's address. Elements
/// can be read and written and whole values assigned from a tensor (or map, or
/// expression) of the same extents, copied into the existing storage; other extents throw
/// ShapeError. A plain `Tensor&` would let `layer.weight() = load()` swap in the
/// temporary's storage and free the memory the optimiser points at.
template <typename Scalar, int Rank>
class FixedShapeRef {
 public:
  using TensorType = Tensor<Scalar, Rank>;

  FixedShapeRef(TensorType& tensor, const Layer<Scalar>& owner, const char* what)
      : tensor_(&tensor), owner_(&owner), what_(what) {}
  FixedShapeRef(const FixedShapeRef&) = default;

  /// Copies `values` (same extents) into the tensor: an eigenet::Tensor, TensorMap or
  /// tensor expression of the same scalar type and rank, row-major.
  template <typename Other, std::enable_if_t<detail::is_tensor_like_v<Other, Scalar, Rank>, int> = 0>
  FixedShapeRef& operator=(const Other& values) {
    const TensorType evaluated = values;  // a tensor, a map or an expression
    if (evaluated.dimensions() != tensor_->dimensions()) {
      Shape expected, actual;
      for (int d = 0; d < Rank; ++d) {
        expected.push_back(tensor_->dimension(d));
        actual.push_back(evaluated.dimension(d));
      }
      throw ShapeError(detail::concat(owner_->name(), ": ", what_, " has shape ", to_string(expected),
                                      " and keeps it; cannot assign ", to_string(actual)));
    }
    std::copy(evaluated.data(), evaluated.data() + evaluated.size(), tensor_->data());
    return *this;
  }
  FixedShapeRef& operator=(const FixedShapeRef& other) { return *this = other.tensor(); }
  /// Anything else — a number (Eigen would take it as a size), a tensor of another rank,
  /// scalar type or layout — does not compile. For a number, use setConstant().
  template <typename Other, std::enable_if_t<!detail::is_tensor_like_v<Other, Scalar, Rank>, int> = 0>
  FixedShapeRef& operator=(const Other&) = delete;

  template <typename... Indices>
  Scalar& operator()(Indices... indices) const {
    return (*tensor_)(indices...);
  }
  Scalar* data() const { return tensor_->data(); }
  Index size() const { return tensor_->size(); }
  Index dimension(Index d) const { return tensor_->dimension(d); }
  const auto& dimensions() const { return tensor_->dimensions(); }
  const FixedShapeRef& setConstant(Scalar value) const {
    tensor_->setConstant(value);
    return *this;
  }
  const FixedShapeRef& setZero() const { return setConstant(Scalar(0)); }
  /// Eigen's nested initializer lists (elements not listed keep their values).
  const FixedShapeRef& setValues(
      const typename Eigen::internal::Initializer<TensorType, Rank>::InitList& values) const {
    tensor_->setValues(values);
    return *this;
  }

  /// The tensor, read-only; copy it with `Tensor<float, 1> gamma = bn.weight();`.
  const TensorType& tensor() const { return *tensor_; }
  operator const TensorType&() const { return *tensor_; }

 private:
  TensorType* tensor_;
  const Layer<Scalar>* owner_;
  const char* what_;  // "weight", "running_var", ...
};

template <typename Scalar>
class Layer {
 public:
  static_assert(std::is_floating_point_v<Scalar>, "eigenet layers take float or double");
  using scalar_type = Scalar;

  Layer() = default;
  Layer(const Layer&) = default;
  Layer& operator=(const Layer&) = delete;  // see "assignment" above
  Layer(Layer&&) noexcept = default;
  Layer& operator=(Layer&&) = delete;
  virtual ~Layer() = default;

  /// A short, human-readable description, e.g. "BatchNorm(64)".
  virtual std::string name() const = 0;

  /// A deep copy of the layer (parameters, gradients, running state, mode).
  virtual std::unique_ptr<Layer> clone() const = 0;

  /// The shape forward returns for an input of `input` shape; throws ShapeError if the
  /// layer does not accept it.
  virtual Shape output_shape(const Shape& input) const = 0;

  /// y = f(x). y has output_shape(x.shape) and does not alias x.
  virtual void forward_into(ConstView<Scalar> x, View<Scalar> y) = 0;

  /// dx = ∂L/∂x given dy = ∂L/∂y, and parameter gradients added into grad. dx.data may be
  /// null: the input gradient is then not computed (the first layer of a network).
  virtual void backward_into(ConstView<Scalar> x, ConstView<Scalar> dy, View<Scalar> dx) = 0;

  /// The trainable parameters, with stable addresses for the layer's lifetime.
  virtual std::vector<Parameter<Scalar>> parameters() { return {}; }

  /// Switch the mode; containers pass it on to their layers.
  virtual void set_training(bool training) { training_ = training; }
  bool is_training() const { return training_; }
  void train() { set_training(true); }
  void eval() { set_training(false); }

  /// Sets every parameter gradient to zero.
  void zero_grad() {
    for (auto& p : parameters()) std::fill(p.grad, p.grad + p.size, Scalar(0));
  }

  /// Typed forward: eigenet::Tensor or TensorMap in, eigenet::Tensor of the same rank out.
  template <typename Input>
  Tensor<Scalar, Input::NumDimensions> forward(const Input& x) {
    static_assert(std::is_same_v<typename Input::Scalar, Scalar>, "input scalar type differs from the layer's");
    last_input_.reset();  // a forward that throws, here or in forward_into, leaves none
    const ConstView<Scalar> in = detail::view_of(x);
    auto y = detail::make_tensor<Scalar, Input::NumDimensions>(output_shape(in.shape));
    forward_into(in, {y.data(), detail::shape_of(y)});
    return y;
  }

  /// Typed backward: returns dx (the shape of x) and adds the parameter gradients.
  template <typename Input, typename Grad>
  Tensor<Scalar, Input::NumDimensions> backward(const Input& x, const Grad& dy) {
    static_assert(std::is_same_v<typename Input::Scalar, Scalar> && std::is_same_v<typename Grad::Scalar, Scalar>,
                  "tensor scalar type differs from the layer's");
    Tensor<Scalar, Input::NumDimensions> dx(x.dimensions());
    backward_into(detail::view_of(x), detail::view_of(dy), {dx.data(), detail::shape_of(dx)});
    return dx;
  }

  /// Backward for the parameter gradients only (dx is not computed).
  template <typename Input, typename Grad>
  void backward_parameters(const Input& x, const Grad& dy) {
    backward_into(detail::view_of(x), detail::view_of(dy), {nullptr, detail::shape_of(x)});
  }

 protected:
  /// The input shape of the last forward that succeeded: what backward must be given.
  /// Every forward resets it first and sets it last, so after a forward that threw,
  /// backward refuses (detail::check_follows_forward).
  std::optional<Shape> last_input_;

 private:
  bool training_ = true;
};

namespace detail {

/// Throws unless a view of `size` elements has storage (a null pointer is allowed only for
/// an empty tensor).
template <typename Scalar>
void check_storage(const Layer<Scalar>& layer, const Scalar* data, const Shape& shape, const char* what) {
  if (data == nullptr && element_count(shape) > 0)
    throw ValueError(concat(layer.name(), ": ", what, " of shape ", to_string(shape), " has no data (null pointer)"));
}

/// Throws unless y has the shape forward produces for x, and both have storage.
template <typename Scalar>
void check_forward_shapes(const Layer<Scalar>& layer, const ConstView<Scalar>& x, const View<Scalar>& y) {
  check_storage(layer, x.data, x.shape, "x");
  const Shape expected = layer.output_shape(x.shape);
  check_storage(layer, y.data, y.shape, "y");
  if (y.shape != expected)
    throw ShapeError(concat(layer.name(), ": output should have shape ", to_string(expected), " for input ",
                            to_string(x.shape), ", not ", to_string(y.shape)));
}

/// Throws unless dy has the shape forward produced for x, and dx (if wanted) that of x.
template <typename Scalar>
void check_backward_shapes(const Layer<Scalar>& layer, const ConstView<Scalar>& x, const ConstView<Scalar>& dy,
                           const View<Scalar>& dx) {
  check_storage(layer, x.data, x.shape, "x");
  check_storage(layer, dy.data, dy.shape, "dy");
  const Shape expected = layer.output_shape(x.shape);
  if (dy.shape != expected)
    throw ShapeError(concat(layer.name(), ": backward expects dy of shape ", to_string(expected), " (the output for x ",
                            to_string(x.shape), "), not ", to_string(dy.shape)));
  if (dx.data != nullptr && dx.shape != x.shape)
    throw ShapeError(
        concat(layer.name(), ": dx should have the shape of x ", to_string(x.shape), ", not ", to_string(dx.shape)));
}

/// Throws StateError unless backward follows a forward on an input of x's shape; `last`
/// is the input shape of the last forward (none: no forward yet, or the last one threw).
template <typename Scalar>
void check_follows_forward(const Layer<Scalar>& layer, const std::optional<Shape>& last, const ConstView<Scalar>& x) {
  if (!last) throw StateError(layer.name() + ": backward called before forward (or after a forward that threw)");
  if (x.shape != *last)
    throw StateError(concat(layer.name(), ": backward expects the input of the last forward, of shape ",
                            to_string(*last), ", not ", to_string(x.shape)));
}

}  // namespace detail
}  // namespace eigenet
