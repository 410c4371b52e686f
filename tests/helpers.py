"""compare_with_torch: one call checks an op's output and every gradient against torch."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as TF

from minicnn import functional as F
from minicnn.kernels import conv

# max |minicnn - torch| relative to the largest magnitude in torch's answer
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


def to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def assert_close(
    actual, expected, what: str = "array", tolerance: float | None = None, scale: float = 0.0
) -> None:
    """Same shape, same dtype, same non-finite entries, finite entries within tolerance.

    The error is measured against the largest magnitude of ``expected``, or ``scale`` when
    that is larger: a sum that cancels to a small result can only be as exact as its terms.
    """
    expected = to_numpy(expected)
    assert isinstance(actual, np.ndarray), f"{what}: expected a numpy array, got {type(actual)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    tolerance = TOLERANCE[expected.dtype] if tolerance is None else tolerance
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaNs")
    np.testing.assert_array_equal(
        actual[~finite & ~np.isnan(expected)],
        expected[~finite & ~np.isnan(expected)],
        err_msg=f"{what}: infinities",
    )
    if not finite.any():
        return
    scale = max(np.abs(expected[finite]).max(), scale)
    error = np.abs(actual[finite].astype(np.float64) - expected[finite]).max()
    assert error <= tolerance * max(scale, np.finfo(expected.dtype).tiny), (
        f"{what}: max error {error:.3e} > {tolerance:.0e} x largest magnitude {scale:.3e}"
    )


def _backward(name: str, grad, arrays, kwargs):
    """minicnn's gradients of op ``name`` with respect to ``arrays`` (None: not computed)."""
    if name == "conv2d":
        x, w, b = (list(arrays) + [None])[:3]
        mask = (True, True, b is not None)
        return F.conv2d_backward(grad, x, w, **kwargs, output_mask=mask)
    if name == "linear":
        x, w, b = (list(arrays) + [None])[:3]
        return F.linear_backward(grad, x, w, output_mask=(True, True, b is not None))
    if name == "max_pool2d":
        return (F.max_pool2d_backward(grad, arrays[0], **kwargs),)
    if name == "avg_pool2d":
        return (F.avg_pool2d_backward(grad, arrays[0], **kwargs),)
    if name == "relu":
        return (F.relu_backward(grad, arrays[0]),)
    if name == "softmax":
        return (F.softmax_backward(grad, F.softmax(arrays[0], **kwargs), **kwargs),)
    if name == "log_softmax":
        return (F.log_softmax_backward(grad, F.log_softmax(arrays[0], **kwargs), **kwargs),)
    if name == "cross_entropy":
        return (F.cross_entropy_backward(grad, *arrays, **kwargs),)
    raise KeyError(name)


def term_scales(name: str, arrays, grad, kwargs) -> list[float]:
    """For the sums inside conv2d, linear and avg_pool2d: the largest sum of |terms| of the
    output and of each gradient (the same op on absolute values), the scale their rounding
    error is proportional to. Other ops do not cancel: 0."""
    if name not in ("conv2d", "linear", "avg_pool2d"):
        return [0.0] * 4
    absolute = [None if a is None else np.abs(a) for a in arrays]
    out = getattr(F, name)(*absolute, **kwargs)
    grads = _backward(name, np.abs(grad), absolute, kwargs)
    return [float(np.abs(a).max(initial=0)) if a is not None else 0.0 for a in (out, *grads)]


def compare_with_torch(name: str, *arrays, seed: int = 0, **kwargs) -> None:
    """Check ``minicnn.functional.<name>(*arrays, **kwargs)`` against torch's op of that name.

    Compares the output (shape, dtype, values), then sends one random ``grad_output`` back
    through both and compares the gradient of every float array that torch differentiates.
    """
    ours = getattr(F, name)(*arrays, **kwargs)
    grad = np.random.default_rng(seed).standard_normal(ours.shape).astype(ours.dtype)
    scales = term_scales(name, arrays, grad, kwargs)
    tensors = [
        None
        if a is None
        else torch.tensor(
            a, requires_grad=np.issubdtype(a.dtype, np.floating) and i < _n_diff(name)
        )
        for i, a in enumerate(arrays)
    ]
    theirs = getattr(TF, name)(*tensors, **kwargs)
    assert_close(ours, theirs, f"{name} forward", scale=scales[0])

    theirs.backward(torch.tensor(grad))
    our_grads = _backward(name, grad, arrays, kwargs)
    for i, tensor in enumerate(tensors[: _n_diff(name)]):
        if tensor is None or not tensor.requires_grad:
            continue
        assert our_grads[i] is not None, f"{name}: gradient {i} missing"
        assert_close(
            our_grads[i], tensor.grad, f"{name} gradient of argument {i}", scale=scales[1 + i]
        )


def _n_diff(name: str) -> int:
    """How many leading arguments of op ``name`` are differentiated."""
    return {"conv2d": 3, "linear": 3, "cross_entropy": 1}.get(name, 1)


def compare_module_with_torch(ours, theirs, x: np.ndarray, seed: int = 0) -> None:
    """Give ``ours`` torch's parameters, then compare output, input gradient and every
    parameter gradient (by name) after one backward pass with a random grad_output."""
    ours.load_state_dict({k: to_numpy(v) for k, v in theirs.state_dict().items()})
    out = ours(x)
    xt = torch.tensor(x, requires_grad=True)
    out_t = theirs(xt)
    assert_close(out, out_t, f"{type(ours).__name__} forward")
    grad = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    grad_x = ours.backward(grad)
    out_t.backward(torch.tensor(grad))
    assert_close(grad_x, xt.grad, f"{type(ours).__name__} input gradient")
    torch_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        assert_close(param.grad, torch_params[name].grad, f"{type(ours).__name__}.{name}.grad")


@contextlib.contextmanager
def direct_for_any_channels():
    """Let the fast conv2d take the direct 3x3 loops (``minicnn.kernels.fastconv.direct``) however
    many input channels a case has (the deck's first conv has one)."""
    saved = conv.WINOGRAD_MIN_CHANNELS, conv.DIRECT_MAX_CHANNELS
    conv.WINOGRAD_MIN_CHANNELS, conv.DIRECT_MAX_CHANNELS = 10**9, 10**9
    try:
        yield
    finally:
        conv.WINOGRAD_MIN_CHANNELS, conv.DIRECT_MAX_CHANNELS = saved


@contextlib.contextmanager
def winograd_for_any_channels(m: int | None = None):
    """Let the fast conv2d take Winograd however few input channels a case has (the drawn
    cases have few; the deck's convs have 32 and 64): F(m x m, 3x3) for every output size
    with ``m`` 2 or 4, or the kind ``conv.winograd_kind`` picks for each with None."""
    saved = conv.WINOGRAD_MIN_CHANNELS, conv.WINOGRAD4_MAX_SHARE
    conv.WINOGRAD_MIN_CHANNELS = 1
    conv.WINOGRAD4_MAX_SHARE = {None: saved[1], 2: -1.0, 4: float("inf")}[m]
    try:
        yield
    finally:
        conv.WINOGRAD_MIN_CHANNELS, conv.WINOGRAD4_MAX_SHARE = saved


def run_measuring_memory(code: str, *args: str) -> tuple[str, float]:
    """Run ``code`` in a fresh Python (this worktree importable) and return its stdout and its
    peak resident memory in MB, which the kernel measures whatever Python allocated.

    Linux's ``VmHWM`` is read, not ``ru_maxrss``: the latter survives ``exec`` and would report
    this (much larger) test process's peak."""
    script = (
        f"{code}\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print('peak_mb', int(hwm) / 1024)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out, _, peak = done.stdout.rpartition("peak_mb ")
    return out, float(peak)
