#!/usr/bin/env bash
# The main job: installs what is missing, builds examples/mlp_mnist and trains it on MNIST.
#   scripts/train.sh                               seed-bn model, batch 32, 10 epochs
#   scripts/train.sh --model mlp --batch 128       any mlp_mnist flags pass through
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${EIGENET_BUILD_DIR:-$root/build}"

"$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target mlp_mnist -j "$(nproc)"
# Run from the caller's directory, so relative paths they pass (--json FILE, --data DIR) mean
# what they would mean to any other command.
exec "$build/examples/mlp_mnist" --data "${EIGENET_MNIST_DIR:-$root/data/mnist}" "$@"
