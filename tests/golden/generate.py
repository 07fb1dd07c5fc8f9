#!/usr/bin/python3
"""Writes eigenet's golden test data: PyTorch's answers for BatchNorm, Dropout, SGD, Adam and
softmax cross-entropy, as small text files beside this script.

Run (from anywhere; needs Debian's python3-torch, installed by `scripts/setup.sh --golden`):

    /usr/bin/python3 tests/golden/generate.py

The output is deterministic (fixed seeds, no timestamps), so regenerating with the same
PyTorch gives byte-identical files and `git diff` shows any change. The C++ tests read the
committed files (tests/support/golden.hpp) and need no Python.

Every computation runs in torch.float64: PyTorch's float32 BatchNorm loses digits when the
inputs have a large mean. Every input (x, dy, gamma, beta, logits, gradients, ...) is rounded
to a float32-representable value before the float64 computation, so the C++ tests run the
very same inputs in float and in double and compare both with the float64 answer.

File format (one file per case, UTF-8 text):

    # comment                      lines starting with '#' and blank lines are ignored
    NAME EXTENT... : VALUE...      one array per line

NAME is [A-Za-z0-9_]+. The EXTENTs (zero or more non-negative integers, outermost first)
give the shape; no extent means a scalar (one value). Then a lone ':' and exactly
prod(EXTENTs) values in row-major (C) order, as Python's repr of a float64, which reads
back exactly with strtod. Integers (class labels, flags) are written the same way.
"""

import math
import platform
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent
DTYPE = torch.float64


def torch_package():
    """The Debian package version, when PyTorch came from Debian (its __version__ says 1.13.0a0)."""
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}", "python3-torch"], capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "not from a Debian package"


TORCH = f"PyTorch {torch.__version__} ({torch_package()}), Python {platform.python_version()}"


def prepare_torch():
    """Every generator's first step: warn off another PyTorch version, and one thread so the
    sums (and so the files) come out the same on every run."""
    if torch.__version__.split(".")[:2] != ["1", "13"]:
        print(f"warning: the committed files were made with PyTorch 1.13, this is {torch.__version__}",
              file=sys.stderr)
    torch.set_num_threads(1)


def f32(t):
    """t rounded to float32 values, held as float64."""
    return t.to(torch.float32).to(DTYPE)


def randn(*shape, mean=0.0, std=1.0):
    return f32(mean + std * torch.randn(*shape, dtype=DTYPE))


def uniform(low, high, *shape):
    return f32(low + (high - low) * torch.rand(*shape, dtype=DTYPE))


class Writer:
    def __init__(self, name, description, script="tests/golden/generate.py"):
        self.path = OUT / f"{name}.txt"
        self.lines = [
            f"# eigenet golden data: {description}",
            f"# produced by: /usr/bin/python3 {script} (case '{name}')",
            f"# with {TORCH}, all in torch.float64",
            "# format: NAME EXTENT... : VALUE...   (row-major; see generate.py)",
        ]

    def comment(self, text):
        self.lines.append(f"# {text}")

    def array(self, name, value):
        if isinstance(value, torch.Tensor):
            t = value.detach().to(DTYPE).contiguous()
            shape = list(t.shape)
            values = t.reshape(-1).tolist()
        else:
            shape = []
            values = [float(value)]
        assert all(math.isfinite(v) for v in values), name
        extents = "".join(f" {e}" for e in shape)
        self.lines.append(f"{name}{extents} : " + " ".join(repr(float(v)) for v in values))

    def write(self):
        self.path.write_text("\n".join(self.lines) + "\n")
        print(f"wrote {self.path.relative_to(OUT.parent.parent)}")


# --- BatchNorm -------------------------------------------------------------------------

def batchnorm_case(name, module, shape, eps, momentum, seed, mean=0.0, std=1.0, affine=True,
                   track_running_stats=True, channels_last=False, constant_channels=None):
    """Three training steps (forward, backward, running statistics after each), then one
    inference step (forward and backward with the running statistics, or with batch
    statistics when track_running_stats is off). momentum None is PyTorch's cumulative
    average. channels_last: x has its channels on the last axis (Keras axis=-1); PyTorch
    runs on x moved to channels-first and its results are moved back.
    constant_channels: {channel: value} (channels first): in every step those channels of x
    hold that value (rounded to float32), so their batch variance is 0 and only eps keeps
    1/sqrt(var + eps) finite; the other channels are random as usual."""
    assert not (constant_channels and channels_last)
    torch.manual_seed(seed)
    channels = shape[-1] if channels_last else shape[1]
    constants = {c: float(f32(torch.tensor(value, dtype=DTYPE))) for c, value in (constant_channels or {}).items()}
    bn = module(channels, eps=eps, momentum=momentum, affine=affine, track_running_stats=track_running_stats,
                dtype=DTYPE)
    gamma = uniform(0.5, 2.0, channels)
    beta = randn(channels)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(gamma)
            bn.bias.copy_(beta)

    options = f"eps={eps}, momentum={momentum}, affine={affine}, track_running_stats={track_running_stats}"
    layout = "channels last, moved to channels first for PyTorch" if channels_last else "channels first"
    if constants:
        layout += ", constant channels " + ", ".join(f"{c} = {v!r}" for c, v in sorted(constants.items()))
    w = Writer(name, f"{module.__name__}({channels}, {options}) on {tuple(shape)} ({layout})")
    w.comment("training steps k = 1, 2, 3: x_k, dy_k -> y_k, dx_k, dgamma_k, dbeta_k (gradients of that step")
    w.comment("alone), running_mean_k, running_var_k; then eval mode with the running statistics of step 3")
    w.comment("options: momentum_none 1 means momentum=None (cumulative average; 'momentum' is then unused);")
    w.comment("affine 0: no weight and bias (gamma/beta unused, dgamma/dbeta absent); channels_last 1: channel axis -1")
    w.array("eps", eps)
    w.array("momentum", 0.0 if momentum is None else momentum)
    w.array("momentum_none", 1.0 if momentum is None else 0.0)
    w.array("affine", 1.0 if affine else 0.0)
    w.array("track_running_stats", 1.0 if track_running_stats else 0.0)
    w.array("channels_last", 1.0 if channels_last else 0.0)
    w.array("gamma", gamma)
    w.array("beta", beta)
    if constants:
        w.comment("constant_channels, constant_values: in every step x[:, constant_channels[k]] == constant_values[k]")
        w.comment("(variance 0: in training y = beta and dgamma = 0 there, dx = gamma/sqrt(eps) (dy - mean dy);")
        w.comment("PyTorch's y is beta only up to its rounding of x*alpha + (beta - mean*alpha),")
        w.comment("alpha = gamma/sqrt(var + eps))")
        w.array("constant_channels", torch.tensor(sorted(constants), dtype=DTYPE))
        w.array("constant_values", torch.tensor([constants[c] for c in sorted(constants)], dtype=DTYPE))

    def to_torch(t):
        return t.movedim(-1, 1) if channels_last else t

    def from_torch(t):
        return t.movedim(1, -1) if channels_last else t

    def step(tag, training):
        bn.train(training)
        x = randn(*shape, mean=mean, std=std)
        for c, value in constants.items():
            x[:, c] = value
        x.requires_grad_(True)
        dy = randn(*shape)
        bn.zero_grad(set_to_none=True)
        y = from_torch(bn(to_torch(x)))
        y.backward(dy)
        arrays = [("x", x), ("dy", dy), ("y", y), ("dx", x.grad)]
        if affine:
            arrays += [("dgamma", bn.weight.grad), ("dbeta", bn.bias.grad)]
        for key, value in arrays:
            w.array(f"{key}_{tag}", value.contiguous())
        if training and track_running_stats:
            w.array(f"running_mean_{tag}", bn.running_mean)
            w.array(f"running_var_{tag}", bn.running_var)

    for k in (1, 2, 3):
        step(str(k), training=True)
    if track_running_stats:
        assert int(bn.num_batches_tracked) == 3
    step("eval", training=False)
    w.write()


def keras_case(name, shape, seed, keras_momentum=0.99, epsilon=1e-3):
    """Keras BatchNormalization(axis=-1) by its published formulas, evaluated (and
    differentiated) with PyTorch autograd in float64; Keras itself is not available here.
        training: mean, var = moments over all axes but the last (var BIASED)
                  y = gamma (x - mean) / sqrt(var + epsilon) + beta
                  moving_mean = m moving_mean + (1 - m) mean
                  moving_variance = m moving_variance + (1 - m) var      (m weights the OLD value)
        inference: the same y with moving_mean and moving_variance."""
    torch.manual_seed(seed)
    channels = shape[-1]
    axes = tuple(range(len(shape) - 1))
    gamma = uniform(0.5, 2.0, channels).requires_grad_(True)
    beta = randn(channels).requires_grad_(True)
    moving_mean = torch.zeros(channels, dtype=DTYPE)
    moving_variance = torch.ones(channels, dtype=DTYPE)
    w = Writer(name, f"Keras BatchNormalization(axis=-1, momentum={keras_momentum}, epsilon={epsilon}) formulas "
                     f"on {tuple(shape)}")
    w.comment("training steps k = 1, 2, 3 then inference, as in the batchnorm*_ files; running_* are Keras'")
    w.comment("moving_mean / moving_variance (which holds the biased batch variance)")
    w.array("keras_momentum", keras_momentum)
    w.array("epsilon", epsilon)
    w.array("gamma", gamma)
    w.array("beta", beta)
    for tag in ("1", "2", "3", "eval"):
        x = randn(*shape, mean=1.5, std=2.0).requires_grad_(True)
        dy = randn(*shape)
        gamma.grad = None
        beta.grad = None
        if tag != "eval":
            mean = x.mean(dim=axes)
            var = ((x - mean) ** 2).mean(dim=axes)
        else:
            mean, var = moving_mean, moving_variance
        y = gamma * (x - mean) / torch.sqrt(var + epsilon) + beta
        y.backward(dy)
        for key, value in [("x", x), ("dy", dy), ("y", y), ("dx", x.grad), ("dgamma", gamma.grad),
                           ("dbeta", beta.grad)]:
            w.array(f"{key}_{tag}", value)
        if tag != "eval":
            with torch.no_grad():
                moving_mean = keras_momentum * moving_mean + (1 - keras_momentum) * mean.detach()
                moving_variance = keras_momentum * moving_variance + (1 - keras_momentum) * var.detach()
            w.array(f"running_mean_{tag}", moving_mean)
            w.array(f"running_var_{tag}", moving_variance)
    w.write()


def ghost_case(name, shape, virtual_batch_size, seed):
    """Ghost batch normalisation by its definition: PyTorch's BatchNorm1d/2d applied to each
    chunk of virtual_batch_size samples in turn (each chunk one training batch: its own
    statistics, one running-statistics update per chunk, in order), on one batch; the
    gradients are those of the concatenated output."""
    torch.manual_seed(seed)
    channels = shape[1]
    module = torch.nn.BatchNorm1d if len(shape) <= 3 else torch.nn.BatchNorm2d
    bn = module(channels, dtype=DTYPE)
    gamma = uniform(0.5, 2.0, channels)
    beta = randn(channels)
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
    w = Writer(name, f"ghost batch norm: {module.__name__}({channels}) defaults on chunks of {virtual_batch_size} "
                     f"samples of a {tuple(shape)} batch")
    w.comment("x, dy -> y, dx, dgamma, dbeta, running_mean, running_var after the batch (one update per chunk)")
    w.array("virtual_batch_size", virtual_batch_size)
    w.array("gamma", gamma)
    w.array("beta", beta)
    x = randn(*shape, mean=0.5, std=1.5).requires_grad_(True)
    dy = randn(*shape)
    y = torch.cat([bn(chunk) for chunk in torch.split(x, virtual_batch_size, dim=0)], dim=0)
    y.backward(dy)
    w.array("chunks", int(bn.num_batches_tracked))
    for key, value in [("x", x), ("dy", dy), ("y", y), ("dx", x.grad), ("dgamma", bn.weight.grad),
                       ("dbeta", bn.bias.grad), ("running_mean", bn.running_mean), ("running_var", bn.running_var)]:
        w.array(key, value)
    w.write()


def large_mean_case(name, module, shape, seed):
    """Inputs 10000 + randn: training forward, backward and running statistics of one
    step (the float path must not lose the digits below the common offset)."""
    torch.manual_seed(seed)
    channels = shape[1]
    bn = module(channels, dtype=DTYPE)
    w = Writer(name, f"{module.__name__}({channels}) defaults, one training step on {tuple(shape)} "
                     "with x = 10000 + randn (rounded to float32)")
    gamma = uniform(0.5, 2.0, channels)
    beta = randn(channels)
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
    x = randn(*shape, mean=10000.0).requires_grad_(True)
    dy = randn(*shape)
    y = bn(x)
    y.backward(dy)
    w.array("eps", bn.eps)
    w.array("momentum", bn.momentum)
    w.array("gamma", gamma)
    w.array("beta", beta)
    for key, value in [("x", x), ("dy", dy), ("y", y), ("dx", x.grad), ("dgamma", bn.weight.grad),
                       ("dbeta", bn.bias.grad), ("running_mean", bn.running_mean), ("running_var", bn.running_var)]:
        w.array(key, value)
    w.write()


# --- Dropout ---------------------------------------------------------------------------

def dropout_cases():
    torch.manual_seed(300)
    shape = (4, 5, 6)
    # |x| >= 0.25, so a kept element is never 0 and y == 0 exactly marks a dropped one.
    x = randn(*shape)
    x = torch.where(x.abs() < 0.25, torch.sign(x) * 0.25 + 0.25 * (x == 0), x)
    dy = randn(*shape)

    def run(p, training, dtype):
        xi = x.detach().to(dtype).clone().requires_grad_(True)
        y = F.dropout(xi, p=p, training=training)
        y.backward(dy.to(dtype))
        return y, xi.grad

    for p, tag in [(0.0, "p0"), (1.0, "p1"), (0.3, "p0_3")]:
        w = Writer(f"dropout_{tag}", f"torch.nn.functional.dropout with p={p}")
        w.comment("x, dy: inputs; {train,eval}_y, {train,eval}_dx: PyTorch's output and input gradient in float64;")
        w.comment("for 0 < p < 1 also PyTorch's keep scale (the value a kept 1.0 becomes) in float64 and float32,")
        w.comment("and PyTorch's float32 training output for x (its own random mask)")
        w.array("p", p)
        w.array("x", x)
        w.array("dy", dy)
        torch.manual_seed(301)
        y, dx = run(p, True, DTYPE)
        w.array("train_y", y)
        w.array("train_dx", dx)
        y, dx = run(p, False, DTYPE)
        w.array("eval_y", y)
        w.array("eval_dx", dx)
        if 0.0 < p < 1.0:
            ones = 100000
            for dtype, key in [(torch.float64, "scale_float64"), (torch.float32, "scale_float32")]:
                kept = F.dropout(torch.ones(ones, dtype=dtype), p=p, training=True)
                values = kept[kept != 0].unique()
                assert values.numel() == 1, values
                w.array(key, values[0])
            y32, dx32 = run(p, True, torch.float32)
            w.array("train_y_float32", y32)
            w.array("train_dx_float32", dx32)
        w.write()


# --- Optimisers ------------------------------------------------------------------------

STEPS = 5
PARAMS = 7


def optimizer_case(name, make, options, seed):
    torch.manual_seed(seed)
    theta = torch.nn.Parameter(randn(PARAMS))
    grads = [randn(PARAMS) for _ in range(STEPS)]
    opt = make([theta], **options)
    w = Writer(name, f"torch.optim.{make.__name__}({options}), {STEPS} steps on a vector of {PARAMS}")
    w.comment("param_0: initial values; grad_k: the gradient set before step k; param_k: values after step k")
    for key, value in options.items():
        if key == "betas":
            w.array("beta1", value[0])
            w.array("beta2", value[1])
        else:
            w.array(key, float(value))
    w.array("steps", STEPS)
    w.array("param_0", theta)
    for k, grad in enumerate(grads, start=1):
        theta.grad = grad.clone()
        opt.step()
        w.array(f"grad_{k}", grad)
        w.array(f"param_{k}", theta)
    w.write()


def optimizer_cases():
    sgd = torch.optim.SGD
    adam = torch.optim.Adam
    optimizer_case("sgd_plain", sgd, dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False), 400)
    optimizer_case("sgd_momentum", sgd, dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False),
                   401)
    optimizer_case("sgd_momentum_decay", sgd,
                   dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=False), 402)
    optimizer_case("sgd_dampening_decay", sgd,
                   dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2, nesterov=False), 403)
    optimizer_case("sgd_nesterov", sgd, dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True), 404)
    optimizer_case("sgd_nesterov_decay", sgd,
                   dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=True), 405)
    optimizer_case("adam_default", adam, dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0), 410)
    optimizer_case("adam_decay", adam, dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2), 411)
    optimizer_case("adam_custom", adam, dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), 412)


# --- Softmax cross-entropy -------------------------------------------------------------

def cross_entropy_case(name, logits, labels):
    logits = f32(logits).requires_grad_(True)
    loss = F.cross_entropy(logits, labels, reduction="mean")
    loss.backward()
    w = Writer(name, f"torch.nn.functional.cross_entropy(logits, labels, reduction='mean') on {tuple(logits.shape)}")
    w.array("logits", logits)
    w.array("labels", labels)
    w.array("loss", loss)
    w.array("dlogits", logits.grad)
    w.write()


def cross_entropy_cases():
    torch.manual_seed(500)
    cross_entropy_case("cross_entropy", 3 * torch.randn(6, 5, dtype=DTYPE), torch.tensor([0, 4, 2, 2, 1, 3]))
    torch.manual_seed(501)
    logits = torch.randn(6, 5, dtype=DTYPE)
    logits[0, 1] = 1e4  # one dominant logit, the label elsewhere: loss ≈ 1e4
    logits[1, 3] = -1e4  # the label on a vanishing logit: loss ≈ 1e4
    logits[2] = torch.tensor([1e4, 1e4 - 1, 1e4 - 2.5, -1e4, 0.0])  # large common offset, non-trivial softmax
    logits[3] = torch.tensor([-1e4, -1e4 + 0.5, -1e4 - 1, -1e4 + 2, -1e4])  # all logits very negative
    logits[4] = torch.tensor([1e4, -1e4, 1e4, -1e4, 1e4])  # exact ties at the top
    cross_entropy_case("cross_entropy_large", logits, torch.tensor([2, 3, 1, 3, 4, 0]))


def main():
    prepare_torch()
    for module, shape in [(torch.nn.BatchNorm1d, (6, 4)), (torch.nn.BatchNorm2d, (3, 4, 3, 5))]:
        prefix = module.__name__.lower()
        batchnorm_case(f"{prefix}_default", module, shape, eps=1e-5, momentum=0.1, seed=100 + len(shape))
        batchnorm_case(f"{prefix}_eps1e-3_momentum0.3", module, shape, eps=1e-3, momentum=0.3,
                       seed=110 + len(shape), mean=2.0, std=3.0)
    batchnorm_case("batchnorm1d_ncl_default", torch.nn.BatchNorm1d, (4, 3, 5), eps=1e-5, momentum=0.1, seed=120)
    batchnorm_case("batchnorm3d_default", torch.nn.BatchNorm3d, (3, 2, 2, 3, 4), eps=1e-5, momentum=0.1, seed=121)
    batchnorm_case("batchnorm2d_no_affine", torch.nn.BatchNorm2d, (3, 4, 2, 3), eps=1e-5, momentum=0.1, seed=122,
                   affine=False)
    batchnorm_case("batchnorm1d_no_running_stats", torch.nn.BatchNorm1d, (5, 3), eps=1e-5, momentum=0.1, seed=123,
                   track_running_stats=False)
    batchnorm_case("batchnorm2d_no_running_stats_no_affine", torch.nn.BatchNorm2d, (2, 3, 2, 2), eps=1e-5,
                   momentum=0.1, seed=124, affine=False, track_running_stats=False)
    batchnorm_case("batchnorm1d_momentum_none", torch.nn.BatchNorm1d, (6, 4), eps=1e-5, momentum=None, seed=125,
                   mean=-1.0, std=2.0)
    batchnorm_case("batchnorm2d_channels_last", torch.nn.BatchNorm2d, (3, 2, 3, 4), eps=1e-5, momentum=0.1, seed=126,
                   channels_last=True)
    batchnorm_case("batchnorm1d_nlc_channels_last", torch.nn.BatchNorm1d, (4, 5, 3), eps=1e-4, momentum=0.2,
                   seed=127, channels_last=True)
    batchnorm_case("batchnorm3d_channels_last_momentum_none", torch.nn.BatchNorm3d, (2, 2, 3, 2, 3), eps=1e-5,
                   momentum=None, seed=128, channels_last=True)
    batchnorm_case("batchnorm1d_constant_channels", torch.nn.BatchNorm1d, (8, 4), eps=1e-5, momentum=0.1, seed=150,
                   constant_channels={1: 3.0, 3: 1e4})
    batchnorm_case("batchnorm2d_constant_channel", torch.nn.BatchNorm2d, (3, 4, 3, 5), eps=1e-5, momentum=0.1,
                   seed=151, constant_channels={2: 0.1})
    keras_case("batchnorm_keras_nhwc", (4, 3, 3, 5), seed=130)
    keras_case("batchnorm_keras_nc", (8, 3), seed=131, keras_momentum=0.9, epsilon=1e-2)
    ghost_case("batchnorm1d_ghost", (10, 3), 4, seed=140)
    ghost_case("batchnorm2d_ghost", (7, 2, 3, 3), 3, seed=141)
    large_mean_case("batchnorm1d_large_mean", torch.nn.BatchNorm1d, (64, 3), seed=200)
    large_mean_case("batchnorm2d_large_mean", torch.nn.BatchNorm2d, (4, 3, 5, 5), seed=201)
    dropout_cases()
    optimizer_cases()
    cross_entropy_cases()
    # The topic generators beside this file (they import the helpers above).
    import generate_dropout
    import generate_fold
    generate_dropout.main()
    generate_fold.main()


if __name__ == "__main__":
    main()
