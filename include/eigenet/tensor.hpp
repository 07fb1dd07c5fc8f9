// eigenet/tensor.hpp — tensor aliases and the rank-erased views layers work on.
//
// The public API takes and returns row-major Eigen tensors with PyTorch's shapes, batch
// first: (N, C), (N, C, L), (N, C, H, W). Row-major order equals NumPy's and PyTorch's, so
// data moves in and out with no copy and golden values compare element by element.
//
// Inside, a layer sees its input as a `ConstView` — a pointer and a shape of any rank —
// so that one virtual interface serves every rank and a Sequential can keep reusable
// buffers of any rank between steps.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <unsupported/Eigen/CXX11/Tensor>
#include <vector>

#include "eigenet/error.hpp"

namespace eigenet {

using Index = Eigen::Index;

/// The tensor type of the public API.
template <typename Scalar, int Rank>
using Tensor = Eigen::Tensor<Scalar, Rank, Eigen::RowMajor>;

template <typename Scalar, int Rank>
using TensorMap = Eigen::TensorMap<Tensor<Scalar, Rank>>;

template <typename Scalar, int Rank>
using ConstTensorMap = Eigen::TensorMap<const Tensor<Scalar, Rank>>;

/// Extents of a tensor, outermost (batch) first.
using Shape = std::vector<Index>;

inline Index element_count(const Shape& shape) {
  Index count = 1;
  for (Index extent : shape) count *= extent;
  return count;
}

inline std::string to_string(const Shape& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  if (shape.size() == 1) text += ",";
  return text + ")";
}

/// A read-only, row-major, contiguous tensor of any rank.
template <typename Scalar>
struct ConstView {
  const Scalar* data = nullptr;
  Shape shape;
  Index size() const { return element_count(shape); }
  Index rank() const { return static_cast<Index>(shape.size()); }
};

/// A writable, row-major, contiguous tensor of any rank.
template <typename Scalar>
struct View {
  Scalar* data = nullptr;
  Shape shape;
  Index size() const { return element_count(shape); }
  Index rank() const { return static_cast<Index>(shape.size()); }
  operator ConstView<Scalar>() const { return {data, shape}; }
};

/// A row-major tensor of any rank that owns its storage; what a Sequential keeps between
/// layers. Storage only grows, so a training loop with a fixed batch allocates once.
template <typename Scalar>
class Buffer {
 public:
  void resize(const Shape& shape) {
    shape_ = shape;
    const auto count = static_cast<std::size_t>(element_count(shape));
    if (storage_.size() < count) storage_.resize(count);
  }
  View<Scalar> view() { return {storage_.data(), shape_}; }
  ConstView<Scalar> view() const { return {storage_.data(), shape_}; }
  const Shape& shape() const { return shape_; }

 private:
  std::vector<Scalar> storage_;
  Shape shape_;
};

namespace detail {

/// Works for Tensor, TensorMap and const TensorMap alike.
template <typename EigenTensor>
Shape shape_of(const EigenTensor& tensor) {
  static_assert(static_cast<int>(EigenTensor::Layout) == static_cast<int>(Eigen::RowMajor),
                "eigenet takes row-major tensors (eigenet::Tensor<Scalar, Rank>)");
  Shape shape(static_cast<std::size_t>(EigenTensor::NumDimensions));
  for (std::size_t i = 0; i < shape.size(); ++i) shape[i] = tensor.dimension(static_cast<Index>(i));
  return shape;
}

template <typename EigenTensor>
ConstView<typename EigenTensor::Scalar> view_of(const EigenTensor& tensor) {
  return {tensor.data(), shape_of(tensor)};
}

template <typename Scalar, int Rank>
Tensor<Scalar, Rank> make_tensor(const Shape& shape) {
  if (static_cast<int>(shape.size()) != Rank)
    throw ShapeError(concat("output of rank ", shape.size(), " cannot be returned as a tensor of rank ", Rank,
                            "; use the ConstView interface"));
  Eigen::array<Index, Rank> dims;
  for (int i = 0; i < Rank; ++i) dims[static_cast<std::size_t>(i)] = shape[static_cast<std::size_t>(i)];
  return Tensor<Scalar, Rank>(dims);
}

}  // namespace detail
}  // namespace eigenet
