#!/usr/bin/python3
"""Writes eigenet's golden data for folding a Dense (torch.nn.Linear) followed by an
inference-mode BatchNorm1d into one Dense: PyTorch's torch.nn.utils.fusion.fuse_linear_bn_eval
(its fuse_linear_bn_weights for a BatchNorm without affine parameters, with gamma = 1 and
beta = 0: 1.13's fuse_linear_bn_weights does not accept bn.weight = None). Run

    /usr/bin/python3 tests/golden/generate_fold.py

It uses the helpers, the file format and the float64 / float32-rounded-inputs conventions of
generate.py (read its docstring). Deterministic: fixed seeds, one thread.

Each case: a Linear(in, out) with float32-rounded weight and bias; a BatchNorm1d(out) whose
running statistics come from a few training steps in PyTorch (then rounded to float32, so the
C++ tests load the very same values in float and in double), float32-rounded gamma and beta;
then, in eval mode, the fused weight and bias and the outputs of the pair and of the fused
Linear on a float32-rounded x, all in float64.
"""

import sys
from pathlib import Path

import torch
from torch.nn.utils.fusion import fuse_linear_bn_eval, fuse_linear_bn_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import DTYPE, Writer, f32, prepare_torch, randn, uniform  # noqa: E402

SCRIPT = "tests/golden/generate_fold.py"


def writer(name, description):
    return Writer(name, description, script=SCRIPT)


def fold_case(name, in_features, out_features, batch, seed, eps=1e-5, momentum=0.1, affine=True, x_mean=0.0,
              x_std=1.0, training_steps=3):
    torch.manual_seed(seed)
    linear = torch.nn.Linear(in_features, out_features, dtype=DTYPE)
    bn = torch.nn.BatchNorm1d(out_features, eps=eps, momentum=momentum, affine=affine, dtype=DTYPE)
    with torch.no_grad():
        linear.weight.copy_(f32(linear.weight))
        linear.bias.copy_(f32(linear.bias))
        if affine:
            bn.weight.copy_(uniform(0.5, 2.0, out_features))
            bn.bias.copy_(randn(out_features))

    # Running statistics from training steps (the Linear's output feeds the BatchNorm).
    linear.train()
    bn.train()
    with torch.no_grad():
        for _ in range(training_steps):
            bn(linear(randn(batch, in_features, mean=x_mean, std=x_std)))
        bn.running_mean.copy_(f32(bn.running_mean))
        bn.running_var.copy_(f32(bn.running_var))

    linear.eval()
    bn.eval()
    x = randn(batch, in_features, mean=x_mean, std=x_std)
    with torch.no_grad():
        y = bn(linear(x))
        if affine:
            fused = fuse_linear_bn_eval(linear, bn)
            fused_weight, fused_bias = fused.weight, fused.bias
        else:
            ones = torch.ones(out_features, dtype=DTYPE)
            zeros = torch.zeros(out_features, dtype=DTYPE)
            fused_weight, fused_bias = fuse_linear_bn_weights(linear.weight, linear.bias, bn.running_mean,
                                                              bn.running_var, bn.eps, ones, zeros)
        y_fused = torch.nn.functional.linear(x, fused_weight, fused_bias)
    assert torch.allclose(y, y_fused, rtol=1e-12, atol=1e-12), (y - y_fused).abs().max()

    how = "fuse_linear_bn_eval" if affine else "fuse_linear_bn_weights with gamma = 1, beta = 0"
    w = writer(name, f"Linear({in_features}, {out_features}) + BatchNorm1d({out_features}, eps={eps}, "
                     f"affine={affine}) in eval mode, folded by torch.nn.utils.fusion.{how}")
    w.comment(f"running statistics after {training_steps} training steps (momentum {momentum}) on x ~ "
              f"N({x_mean}, {x_std}^2), rounded to float32")
    w.comment("inputs: weight (out, in), bias (out), gamma, beta (absent when affine 0), running_mean, running_var,")
    w.comment("eps, x (N, in); results: fused_weight (out, in), fused_bias (out), y = bn(linear(x)), y_fused")
    w.array("eps", eps)
    w.array("affine", 1.0 if affine else 0.0)
    w.array("weight", linear.weight)
    w.array("bias", linear.bias)
    if affine:
        w.array("gamma", bn.weight)
        w.array("beta", bn.bias)
    w.array("running_mean", bn.running_mean)
    w.array("running_var", bn.running_var)
    w.array("x", x)
    w.array("fused_weight", fused_weight)
    w.array("fused_bias", fused_bias)
    w.array("y", y)
    w.array("y_fused", y_fused)
    w.write()


def main():
    prepare_torch()
    fold_case("fold_linear_bn1d_default", 6, 4, batch=8, seed=300)
    fold_case("fold_linear_bn1d_eps1e-3_offset", 5, 7, batch=10, seed=301, eps=1e-3, momentum=0.3, x_mean=3.0,
              x_std=2.0, training_steps=5)
    fold_case("fold_linear_bn1d_no_affine", 4, 3, batch=6, seed=302, affine=False)


if __name__ == "__main__":
    main()
