#!/usr/bin/env bash
# Installs what is missing (the MNIST files too, so the end-to-end test trains on real
# data), builds everything (tests, examples, benchmarks) and runs all tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${EIGENET_BUILD_DIR:-$root/build}"

"$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEIGENET_BUILD_TESTS=ON -DEIGENET_BUILD_EXAMPLES=ON \
  -DEIGENET_BUILD_BENCHMARKS=ON -DEIGENET_MNIST_DIR="${EIGENET_MNIST_DIR:-$root/data/mnist}" >/dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
