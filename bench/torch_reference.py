#!/usr/bin/env python3
"""PyTorch's CPU kernels at eigenet's benchmark shape, for bench/RESULTS.md.

Times the ATen kernels themselves (no autograd bookkeeping): native_batch_norm (training and
inference), native_batch_norm_backward, native_dropout and native_dropout_backward on an
(N, C) = (16384, 1024) float32 tensor, with the same compulsory-byte counts as
bench/layers/*_bench.cpp, and prints the median of --repetitions runs. These ATen ops have
no out= form on the CPU, so each allocates its outputs (page faults included), as PyTorch
users see them; the plain pass is timed both ways to show what allocation costs.

    scripts/setup.sh --golden            # Debian's python3-torch
    /usr/bin/python3 bench/torch_reference.py --threads 2
"""
import argparse
import statistics
import time

import torch

N, C = 16384, 1024
B = N * C * 4  # bytes of one float32 tensor


def median_ms(fn, repetitions, inner=5):
    fn()  # warm up: first-touch page faults and lazy allocations
    runs = []
    for _ in range(repetitions):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - start) / inner * 1e3)
    return statistics.median(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(N, C) * 2 + 2
    dy = torch.rand(N, C) * 2 - 1
    weight, bias = torch.ones(C), torch.zeros(C)
    running_mean, running_var = torch.zeros(C), torch.ones(C)
    eps, momentum = 1e-5, 0.1

    def bn_train():
        return torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)

    def bn_eval():
        return torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, False, momentum, eps)

    _, save_mean, save_invstd = bn_train()

    def bn_backward():
        return torch.ops.aten.native_batch_norm_backward(dy, x, weight, running_mean, running_var, save_mean,
                                                         save_invstd, True, eps, [True, True, True])

    _, mask = torch.ops.aten.native_dropout(x, 0.5, True)

    def dropout_forward():
        return torch.ops.aten.native_dropout(x, 0.5, True)

    def dropout_backward():
        return torch.ops.aten.native_dropout_backward(dy, mask, 2.0)

    def plain():
        return torch.add(x, 0.25)  # one read, one write, into a new tensor (as every op below)

    y = torch.empty_like(x)

    def plain_out():
        return torch.add(x, 0.25, out=y)  # the same into preallocated memory, as eigenet's benchmarks

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ({N}, {C}) float32, median of "
          f"{args.repetitions}")
    for name, fn, nbytes in [("PlainPass (torch.add)", plain, 2 * B), ("PlainPass (add, out=)", plain_out, 2 * B), ("BatchNormTrainForward", bn_train, 2 * B),
                             ("BatchNormEvalForward", bn_eval, 2 * B), ("BatchNormTrainBackward", bn_backward, 3 * B),
                             ("DropoutForward", dropout_forward, 2 * B),
                             ("DropoutBackward", dropout_backward, 2 * B)]:
        ms = median_ms(fn, args.repetitions)
        print(f"{name:24s} {ms:8.2f} ms  {nbytes / ms / 1e6:6.2f} GB/s")


if __name__ == "__main__":
    main()
