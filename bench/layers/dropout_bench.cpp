// Dropout (p = 0.5) over an (N, C) = (16384, 1024) float tensor, against the plain pass.
//
// Compulsory bytes per call (B = 64 MiB): forward reads x and writes y (2B); backward reads
// dy and writes dx (2B) — the mask is recomputed from (seed, step, index), never stored.
#include "eigenet/layers/dropout.hpp"
#include "support/bench_common.hpp"

namespace eigenet::bench {
namespace {

void BM_DropoutForward(benchmark::State& state) {
  const std::vector<float> x = random_input(8);
  std::vector<float> y(x.size());
  Dropout<float> layer(0.5, 42);
  for (auto _ : state) {
    layer.forward_into({x.data(), kShape}, {y.data(), kShape});
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2 * kElements * Index{sizeof(float)});
}

void BM_DropoutBackward(benchmark::State& state) {
  const std::vector<float> x = random_input(9);
  const std::vector<float> dy = random_input(10);
  std::vector<float> y(x.size()), dx(x.size());
  Dropout<float> layer(0.5, 42);
  layer.forward_into({x.data(), kShape}, {y.data(), kShape});
  for (auto _ : state) {
    layer.backward_into({x.data(), kShape}, {dy.data(), kShape}, {dx.data(), kShape});
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2 * kElements * Index{sizeof(float)});
}

BENCHMARK(BM_PlainPass)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DropoutForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DropoutBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace eigenet::bench
