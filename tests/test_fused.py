"""conv2d → relu → max_pool2d fused: the three ops' results bit for bit, and torch's."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import manual_seed, models, nn, use_backend
from minicnn.kernels import conv
from minicnn.kernels import fused as K
from minicnn.kernels.geometry import ConvGeometry, PoolGeometry
from tests.helpers import assert_close, direct_for_any_channels, winograd_for_any_channels
from tests.strategies import conv2d_cases, winograd_conv2d_cases


@st.composite
def fused_cases(draw):
    """(x, weight, bias, conv kwargs, pool kwargs) whose pool has an output."""
    x, w, b, conv = draw(conv2d_cases())
    k = draw(st.integers(1, 3))
    pool = dict(
        kernel_size=k,
        stride=draw(st.sampled_from([None, 1, 2, 3])),
        padding=draw(st.integers(0, k // 2)),
        dilation=draw(st.integers(1, 2)),
        ceil_mode=draw(st.booleans()),
    )
    try:
        y = F.conv2d(x, w, b, **conv)
        F.max_pool2d(y, **pool)
    except ValueError:
        assume(False)  # a pool larger than the conv's output: drawn again
    return x, w, b, conv, pool


def _fused_kwargs(conv, pool):
    return dict(
        conv,
        kernel_size=pool["kernel_size"],
        pool_stride=pool["stride"],
        pool_padding=pool["padding"],
        pool_dilation=pool["dilation"],
        ceil_mode=pool["ceil_mode"],
    )


def _three_ops(x, w, b, conv, pool, grad):
    """out, indices, (grad_x, grad_w, grad_b) of conv2d, relu, max_pool2d one by one."""
    y = F.conv2d(x, w, b, **conv)
    r = F.relu(y)
    out, indices = F.max_pool2d(r, **pool, return_indices=True)
    grad_r = F.max_pool2d_backward(grad, r, **pool, indices=indices)
    grads = F.conv2d_backward(F.relu_backward(grad_r, y), x, w, **conv)
    return out, indices, grads


PLANS = {
    "winograd": lambda: winograd_for_any_channels(2),
    "winograd4": lambda: winograd_for_any_channels(4),
    "direct": direct_for_any_channels,
}


@pytest.mark.parametrize(
    "backend", ["numpy", "numba", "numba-winograd", "numba-winograd4", "numba-direct"]
)
@given(case=fused_cases(), seed=st.integers(0, 2**16))
def test_fused_equals_the_three_ops_bit_for_bit(backend, case, seed):
    kernel, _, plan = backend.partition("-")  # the plan forced on the 3x3 stride-1 cases
    with use_backend(kernel), PLANS[plan]() if plan else nullcontext():
        _fused_equals_three_ops(*case, seed)


def _fused_equals_three_ops(x, w, b, conv, pool, seed):
    """The fused op's out, indices and gradients equal the three ops', bit for bit."""
    kwargs = _fused_kwargs(conv, pool)
    out, indices = F.conv2d_relu_max_pool2d(x, w, b, **kwargs)
    grad = np.random.default_rng(seed).standard_normal(out.shape).astype(x.dtype)
    grads = F.conv2d_relu_max_pool2d_backward(grad, x, w, b, out, indices, **kwargs)
    out3, indices3, grads3 = _three_ops(x, w, b, conv, pool, grad)
    np.testing.assert_array_equal(out, out3)
    np.testing.assert_array_equal(indices, indices3)
    for name, mine, theirs in zip(("input", "weight", "bias"), grads, grads3):
        np.testing.assert_array_equal(mine, theirs, err_msg=f"gradient of {name}")


@given(case=fused_cases())
def test_fused_matches_torch_in_float64(case):
    x, w, b, conv, pool = case
    x, w = x.astype(np.float64), w.astype(np.float64)
    b = None if b is None else b.astype(np.float64)
    out, _ = F.conv2d_relu_max_pool2d(x, w, b, **_fused_kwargs(conv, pool))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b)
    expected = torch.nn.functional.max_pool2d(
        torch.relu(torch.nn.functional.conv2d(tx, tw, tb, **conv)), **pool
    )
    scale = np.abs(x).max() * np.abs(w).sum(axis=(1, 2, 3)).max() + (0 if b is None else 1)
    assert_close(out, expected.detach(), "fused forward", scale=scale)


def test_fused_twin_is_the_specification():
    # the readable twin composes the three twins; the fast path agrees with it
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 9, 9))
    w, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    conv = ConvGeometry((1, 1), (1, 1, 1, 1), (1, 1), 1)
    pool = PoolGeometry((2, 2), (2, 2), (0, 0), (1, 1), (4, 4))
    out, indices = K.conv2d_relu_max_pool2d_numba(x, w, b, conv, pool)
    out_twin, indices_twin = K.conv2d_relu_max_pool2d_numpy(x, w, b, conv, pool)
    np.testing.assert_array_equal(indices, indices_twin)
    assert_close(out, out_twin, "forward")


def test_fused_reports_bad_pool_arguments_under_its_own_name():
    x, w = np.zeros((1, 1, 4, 4)), np.zeros((2, 1, 3, 3))
    with pytest.raises(ValueError, match="conv2d_relu_max_pool2d: pad should be at most half"):
        F.conv2d_relu_max_pool2d(x, w, kernel_size=2, pool_padding=2)
    with pytest.raises(ValueError, match="conv2d_relu_max_pool2d.*too small"):
        F.conv2d_relu_max_pool2d(x, w, kernel_size=3)  # the conv's 2x2 output is too small
    with pytest.raises(ValueError, match="expected indices of shape"):
        grad = out = np.zeros((1, 2, 1, 1))
        F.conv2d_relu_max_pool2d_backward(
            grad, x, w, None, out, np.zeros((1, 2, 2, 2)), kernel_size=2
        )


@st.composite
def tile_pool_cases(draw, padding=False):
    """(x, weight, bias, conv kwargs, pool kwargs): a 3x3 stride-1 conv and a 2x2 pool at
    stride 2, the pool Winograd's output transforms do on their blocks: F(2x2, 3x3)'s on
    plain windows (odd sizes leave the last row or column out; ceil_mode's overhang takes
    the pool kernel instead), F(4x4, 3x3)'s with ``padding`` too (windows clipped)."""
    x, w, b, conv = draw(winograd_conv2d_cases())
    pool = dict(
        kernel_size=2,
        stride=None,
        padding=draw(st.integers(0, int(padding))),
        dilation=1,
        ceil_mode=draw(st.booleans()),
    )
    try:
        F.max_pool2d(F.conv2d(x, w, b, **conv), **pool)
    except ValueError:
        assume(False)  # an output of one row or column: no window
    return x, w, b, conv, pool


@pytest.mark.parametrize("m", [2, 4])
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_winograd_pooled_blocks_equal_the_three_ops_bit_for_bit(m, data, seed):
    x, w, b, conv, pool = data.draw(tile_pool_cases(padding=m == 4))
    with use_backend("numba"), winograd_for_any_channels(m):
        assert type(conv_plan(x, w, b, conv)).__name__ == f"Winograd{m}Plan"
        _fused_equals_three_ops(x, w, b, conv, pool, seed)


def conv_plan(x, w, b, conv_kwargs):
    """The plan the fast conv2d makes for a case of ``winograd_conv2d_cases``."""
    padding = conv_kwargs["padding"]
    if isinstance(padding, str):
        padding = 1 if padding == "same" else 0
    pH, pW = padding if isinstance(padding, tuple) else (padding, padding)
    return conv.make_plan(x.shape, w, b, (1, 1), (pH, pH, pW, pW), (1, 1), 1, x.dtype)


@pytest.mark.parametrize(
    "channels, plan, pool",
    [
        (1, "DirectPlan", {}),
        (1, "DirectPlan", dict(size=(8, 10))),  # even: its windows' phases, flat
        (8, "Winograd2Plan", {}),  # its pooled tiles' backward
        (8, "Winograd4Plan", {}),  # F(4x4, 3x3)'s pooled blocks', forced
        (8, "Winograd4Plan", dict(pool_padding=1)),
        (8, "Winograd4Plan", dict(pool_padding=(0, 1), ceil_mode=True)),
        (3, "ConvPlan", {}),
        (3, "ConvPlan", dict(pool_padding=1)),  # the clipped windows' backward
        (3, "ConvPlan", dict(pool_padding=(0, 1), ceil_mode=True)),
    ],
)
@pytest.mark.parametrize("input_grad", [True, False])
def test_fused_2x2_backward_takes_indices_outside_their_windows(channels, plan, pool, input_grad):
    """Indices not from the forward pass (each pointing at some pixel of the plane): the
    gradient goes where they point, as the twin sends it, through each 2x2 backward (the
    direct conv's, F(2x2, 3x3)'s tiles', F(4x4, 3x3)'s blocks', the one the other plans use,
    the clipped windows'), with the input's gradient and without (the direct conv then
    finds the strays by itself). Everything is positive, so relu passes every gradient."""
    rng = np.random.default_rng(0)
    pool = dict(pool)
    H, W = pool.pop("size", (9, 11))  # odd: some pixels in no window (no padding)
    x = rng.uniform(0.1, 1, (3, channels, H, W))
    w, b = rng.uniform(0.1, 1, (5, channels, 3, 3)), rng.uniform(0.1, 1, 5)
    kwargs = dict(padding=1, kernel_size=2, pool_stride=2, **pool)
    forced = PLANS["winograd4"] if plan == "Winograd4Plan" else nullcontext
    with use_backend("numba"), forced():
        out, indices = F.conv2d_relu_max_pool2d(x, w, b, **kwargs)
        foreign = rng.integers(0, H * W, indices.shape)  # (3, 5, pH, pW)
        foreign[0, 1:3] = indices[0, 1:3]  # some planes keep their own
        grad = rng.standard_normal(out.shape)
        made = conv.make_plan(x.shape, w, b, (1, 1), (1,) * 4, (1, 1), 1, x.dtype)
        assert type(made).__name__ == plan
        fast = F.conv2d_relu_max_pool2d_backward(
            grad, x, w, b, out, foreign, **kwargs, output_mask=(input_grad, True, True)
        )
    with use_backend("numpy"):
        twin = F.conv2d_relu_max_pool2d_backward(grad, x, w, b, out, foreign, **kwargs)
    assert (fast[0] is None) == (not input_grad)
    for name, mine, expected in zip(("input", "weight", "bias"), fast, twin):
        if mine is not None:
            assert_close(mine, expected, f"gradient of {name}", tolerance=1e-13)


@pytest.mark.parametrize("model_name", ["CNN", "DeepCNN"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_models_train_the_same_bits_with_and_without_fusion(model_name, dtype):
    x = np.random.default_rng(0).random((6, 1, 28, 28)).astype(dtype)
    y = np.arange(6)
    results = []
    for enabled in (False, True):
        manual_seed(5)
        model = getattr(models, model_name)(dtype=dtype).eval()  # eval: no dropout masks
        with nn.fusion(enabled):
            cost = nn.CrossEntropyLoss()(model(x), y)
            cost.backward()
        results.append((float(cost), [p.grad.copy() for p in model.parameters()]))
        assert list(model.state_dict()) == list(getattr(models, model_name)().state_dict())
    assert results[0][0] == results[1][0]
    for unfused, fused in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(unfused, fused)


def test_sequential_fuses_only_the_exact_run_with_the_fast_kernels(monkeypatch):
    calls = []
    monkeypatch.setattr(
        nn.ConvReLUMaxPool2d, "forward", lambda self, x: calls.append("fused") or x[:, :, ::2, ::2]
    )
    block = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    block(x)
    assert calls == ["fused"]
    with use_backend("numpy"):
        block(x)  # the twins run layer by layer
    with nn.fusion(False):
        block(x)
    nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.ReLU())(x)  # other order
    assert calls == ["fused"]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NaN meets NaN
@pytest.mark.parametrize(
    "backend, m, pool_padding",
    [
        ("numpy", None, 0),
        ("numba", None, 0),
        ("numba", "direct", 0),
        ("numba", 2, 0),
        ("numba", 4, 0),
        ("numba", 4, 1),
    ],
)
def test_fused_handles_nan_and_infinity_as_the_three_ops_do(backend, m, pool_padding):
    # a NaN wins its window and passes relu's gradient (torch's rules); infinities stay, but
    # through Winograd F(m x m, 3x3), whose output transforms pool their blocks themselves,
    # an infinity spreads as NaNs (the transforms subtract it from itself). "direct": the
    # first layer's 3x3 conv of one channel, computed and pooled phase by phase
    rng = np.random.default_rng(9)
    C, k = {None: (2, 1), "direct": (1, 3)}.get(m, (8, 3))
    x = rng.standard_normal((2, C, 6, 8))
    x[0, 0, 1, 1], x[0, C - 1, 4, 2], x[1, 0, 0, 5] = np.nan, np.inf, -np.inf
    x[1, 0, 3, 4] = np.nan  # reaching its windows after their first pixel (a 3x3 conv)
    w, b = rng.standard_normal((3, C, k, k)), rng.standard_normal(3)
    conv = dict(stride=1, padding=k // 2, dilation=1, groups=1)
    pool = dict(kernel_size=2, stride=None, padding=pool_padding, dilation=1, ceil_mode=False)
    kwargs = _fused_kwargs(conv, pool)
    forced = winograd_for_any_channels(m) if isinstance(m, int) else nullcontext()
    with use_backend(backend), forced:
        if m is not None:
            kind = "DirectPlan" if m == "direct" else f"Winograd{m}Plan"
            assert type(conv_plan(x, w, b, conv)).__name__ == kind
        out, indices = F.conv2d_relu_max_pool2d(x, w, b, **kwargs)
        grad = rng.standard_normal(out.shape)
        grads = F.conv2d_relu_max_pool2d_backward(grad, x, w, b, out, indices, **kwargs)
        out3, indices3, grads3 = _three_ops(x, w, b, conv, pool, grad)
    assert np.isnan(out).any()
    np.testing.assert_array_equal(out, out3)
    np.testing.assert_array_equal(indices, indices3)
    for mine, theirs in zip(grads, grads3):
        np.testing.assert_array_equal(mine, theirs)
