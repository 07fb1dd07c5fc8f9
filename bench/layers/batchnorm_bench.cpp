// BatchNorm over an (N, C) = (16384, 1024) float tensor, against the plain pass.
//
// Compulsory bytes per call (B = 64 MiB, one tensor):
//   training forward   read x, write y                 2B  (statistics need a second read of x)
//   statistics alone   read x                          B
//   inference forward  read x, write y                 2B
//   training backward  read x and dy, write dx         3B  (the reductions need a second read)
// See bench/RESULTS.md for the floor these imply and what was measured.
#include "eigenet/layers/batchnorm.hpp"
#include "support/bench_common.hpp"

namespace eigenet::bench {
namespace {

void BM_BatchNormTrainForward(benchmark::State& state) {
  const std::vector<float> x = random_input(2, 3.0f);
  std::vector<float> y(x.size());
  BatchNorm<float> layer(kChannels);
  for (auto _ : state) {
    layer.forward_into({x.data(), kShape}, {y.data(), kShape});
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2 * kElements * Index{sizeof(float)});
}

// The statistics pass alone (kernels::channel_stats): one read of x (B).
void BM_BatchNormStatistics(benchmark::State& state) {
  const std::vector<float> x = random_input(2, 3.0f);
  for (auto _ : state) {
    kernels::ChannelStats stats = kernels::channel_stats(x.data(), kSamples, kChannels, 1);
    benchmark::DoNotOptimize(stats.mean.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, kElements * Index{sizeof(float)});
}

void BM_BatchNormEvalForward(benchmark::State& state) {
  const std::vector<float> x = random_input(3, 3.0f);
  std::vector<float> y(x.size());
  BatchNorm<float> layer(kChannels);
  layer.eval();
  for (auto _ : state) {
    layer.forward_into({x.data(), kShape}, {y.data(), kShape});
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2 * kElements * Index{sizeof(float)});
}

void BM_BatchNormTrainBackward(benchmark::State& state) {
  const std::vector<float> x = random_input(4, 3.0f);
  const std::vector<float> dy = random_input(5);
  std::vector<float> y(x.size()), dx(x.size());
  BatchNorm<float> layer(kChannels);
  layer.forward_into({x.data(), kShape}, {y.data(), kShape});
  for (auto _ : state) {
    layer.backward_into({x.data(), kShape}, {dy.data(), kShape}, {dx.data(), kShape});
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 3 * kElements * Index{sizeof(float)});
}

void BM_BatchNormEvalBackward(benchmark::State& state) {
  const std::vector<float> x = random_input(6, 3.0f);
  const std::vector<float> dy = random_input(7);
  std::vector<float> y(x.size()), dx(x.size());
  BatchNorm<float> layer(kChannels);
  layer.eval();
  layer.forward_into({x.data(), kShape}, {y.data(), kShape});
  for (auto _ : state) {
    layer.backward_into({x.data(), kShape}, {dy.data(), kShape}, {dx.data(), kShape});
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 3 * kElements * Index{sizeof(float)});
}

BENCHMARK(BM_PlainPass)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNormTrainForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNormStatistics)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNormEvalForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNormTrainBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BatchNormEvalBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace eigenet::bench
