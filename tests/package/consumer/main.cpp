// The README's usage snippet, built by a project that consumes eigenet through
// find_package(eigenet) or add_subdirectory (see tests/package/CMakeLists.txt).
#include <cstdint>
#include <eigenet/eigenet.hpp>
#include <iostream>
#include <vector>

int main() {
  using namespace eigenet;
  Sequential<float> model;  // owns its layers
  model.add<Dense<float>>(4, 16, Init::HeUniform, /*seed=*/1);
  model.add<BatchNorm<float>>(16);
  model.add<ReLU<float>>();
  model.add<Dropout<float>>(0.2, /*seed=*/2);
  model.add<Dense<float>>(16, 3, Init::HeUniform, /*seed=*/3);

  Tensor<float, 2> x(8, 4);  // (N, features), row-major like PyTorch
  x.setValues(
      {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {1, 1, 0, 0}, {0, 1, 1, 0}, {1, 0, 1, 0}, {0, 0, 0, 1}, {1, 1, 1, 1}});
  const std::vector<std::int64_t> labels{0, 1, 2, 0, 1, 2, 0, 1};

  Adam<float> optimizer(model.parameters());  // PyTorch's defaults: lr 1e-3
  SoftmaxCrossEntropy<float> loss;
  model.train();
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    const Tensor<float, 2> logits = model.forward(x);
    last = loss.forward(logits, labels);  // mean over the batch
    if (step == 0) first = last;
    optimizer.zero_grad();
    model.backward_parameters(x, loss.backward());  // gradients add up until zero_grad
    optimizer.step();
  }
  model.eval();  // BatchNorm uses its running statistics, Dropout is the identity
  const Tensor<float, 2> logits = model.forward(x);
  std::cout << "loss " << first << " -> " << last << ", eval logits " << logits.dimension(0) << "x"
            << logits.dimension(1) << "\n";
  return last < first ? 0 : 1;
}
