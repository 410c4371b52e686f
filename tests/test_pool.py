"""max_pool2d and avg_pool2d against torch, their twins and the tie rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import use_backend
from tests.helpers import assert_close, compare_with_torch, term_scales
from tests.strategies import pool_cases

BACKENDS = ["numpy", "numba"]


def _outside(indices: np.ndarray, x: np.ndarray) -> bool:
    """Whether a window lay entirely in the padding (its index points past the plane)."""
    return bool((indices >= x.shape[-2] * x.shape[-1]).any())


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=pool_cases("max"))
def test_max_pool2d_matches_torch(backend, case):
    x, kwargs = case
    with use_backend(backend):
        ours, indices = F.max_pool2d(x, **kwargs, return_indices=True)
        expected, torch_indices = torch.nn.functional.max_pool2d(
            torch.tensor(x), **kwargs, return_indices=True
        )
        np.testing.assert_array_equal(indices, torch_indices.numpy())
        if _outside(indices, x):
            # torch's backward writes out of bounds for such windows (heap corruption), so
            # only the forward is compared here; test_window_entirely_in_padding covers ours
            assert_close(ours, expected)
        else:
            compare_with_torch("max_pool2d", x, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=pool_cases("avg"))
def test_avg_pool2d_matches_torch(backend, case):
    x, kwargs = case
    with use_backend(backend):
        compare_with_torch("avg_pool2d", x, **kwargs)


@given(case=pool_cases("max"))
def test_fast_max_pool2d_matches_its_twin(case):
    x, kwargs = case
    with use_backend("numpy"):
        out, idx = F.max_pool2d(x, **kwargs, return_indices=True)
        grad = F.max_pool2d_backward(np.ones_like(out), x, **kwargs)
    with use_backend("numba"):
        out_fast, idx_fast = F.max_pool2d(x, **kwargs, return_indices=True)
        np.testing.assert_array_equal(out_fast, out)
        np.testing.assert_array_equal(idx_fast, idx)
        assert_close(F.max_pool2d_backward(np.ones_like(out), x, **kwargs), grad)


@given(case=pool_cases("avg"))
def test_fast_avg_pool2d_matches_its_twin(case):
    x, kwargs = case
    with use_backend("numpy"):
        out = F.avg_pool2d(x, **kwargs)
        upstream = np.random.default_rng(0).standard_normal(out.shape).astype(x.dtype)
        grad = F.avg_pool2d_backward(upstream, x, **kwargs)
        scales = term_scales("avg_pool2d", (x,), upstream, kwargs)
    with use_backend("numba"):
        assert_close(F.avg_pool2d(x, **kwargs), out, scale=scales[0])
        assert_close(F.avg_pool2d_backward(upstream, x, **kwargs), grad, scale=scales[1])


@pytest.mark.parametrize("backend", BACKENDS)
@given(
    seed=st.integers(0, 2**32 - 1),
    kernel=st.integers(2, 4),
    stride=st.integers(1, 3),
    ceil_mode=st.booleans(),
)
def test_max_pool_ties_send_the_gradient_to_the_first_maximum(
    backend, seed, kernel, stride, ceil_mode
):
    # after ReLU most values are exactly 0: every window is a tie
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.integers(-3, 2, size=(2, 3, 9, 8)), 0).astype(np.float64)
    kwargs = dict(kernel_size=kernel, stride=stride, padding=kernel // 2, ceil_mode=ceil_mode)
    with use_backend(backend):
        _, indices = F.max_pool2d(x, **kwargs, return_indices=True)
        compare_with_torch("max_pool2d", x, **kwargs)
    _, expected = torch.nn.functional.max_pool2d(torch.tensor(x), **kwargs, return_indices=True)
    np.testing.assert_array_equal(indices, expected.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_tie_rule_by_hand(backend):
    # all four equal: the first in row-major order (top-left) wins
    x = np.zeros((1, 1, 2, 2))
    with use_backend(backend):
        _, indices = F.max_pool2d(x, 2, return_indices=True)
        grad = F.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2)
    assert indices.item() == 0
    np.testing.assert_array_equal(grad[0, 0], [[1.0, 0.0], [0.0, 0.0]])
    # the two maxima of [[1, 3], [3, 0]]: the one in the first row wins
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
    with use_backend(backend):
        _, indices = F.max_pool2d(x, 2, return_indices=True)
    assert indices.item() == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_like_torch(backend):
    x = np.array([[[[1.0, np.nan], [3.0, np.nan]]]])
    with use_backend(backend):
        out, idx = F.max_pool2d(x, 2, return_indices=True)
    t_out, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    assert np.isnan(out.item()) and idx.item() == t_idx.item()


@pytest.mark.parametrize("backend", BACKENDS)
def test_window_entirely_in_padding_is_minus_infinity_like_torch(backend):
    # dilation 3 with padding 1 on a 2x2 input: the window's taps are -1 and 2, both outside.
    # torch answers -inf with index 6 (past the 4-pixel plane); its backward then writes out
    # of bounds, while minicnn drops that window's gradient: the output is a constant
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    kwargs = dict(kernel_size=2, stride=1, padding=1, dilation=3)
    with use_backend(backend):
        out, idx = F.max_pool2d(x, **kwargs, return_indices=True)
        grad = F.max_pool2d_backward(np.ones_like(out), x, **kwargs)
    t_out, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), **kwargs, return_indices=True)
    assert out.item() == t_out.item() == -np.inf
    assert idx.item() == t_idx.item() == 6
    np.testing.assert_array_equal(grad, np.zeros_like(x))


def test_deck_pool_output_7_to_4():
    x = np.random.default_rng(0).standard_normal((1, 128, 7, 7)).astype(np.float32)
    assert F.max_pool2d(x, 2, 2, padding=1).shape == (1, 128, 4, 4)
    assert F.pool_output_size(7, 2, 2, 1) == 4


SPECIAL = st.sampled_from([-np.inf, -1.0, 0.0, 1.0, 2.0, np.nan, np.inf])


@pytest.mark.parametrize("backend", BACKENDS)
@given(
    data=st.data(),
    pad=st.tuples(st.integers(0, 1), st.integers(0, 1)),
    size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    ceil_mode=st.booleans(),
)
def test_2x2_pools_with_padding_or_overhang_pick_torchs_winners(
    backend, data, pad, size, ceil_mode
):
    """Kernel 2, stride 2, every padding and ceil_mode (the clipped 2x2 kernel's pools, the
    DeepCNN's third among them) on values full of ties, infinities and NaN; and the same
    after relu, through the fused conv (a 1x1 identity conv): torch's values and indices."""
    if size[0] + 2 * pad[0] < 2 or size[1] + 2 * pad[1] < 2:
        return  # no window fits
    count = 2 * size[0] * size[1]
    x = np.array(data.draw(st.lists(SPECIAL, min_size=count, max_size=count)))
    x = x.reshape(1, 2, *size)
    kwargs = dict(kernel_size=2, stride=2, padding=pad, ceil_mode=ceil_mode)
    xt = torch.tensor(x)
    t_out, t_idx = torch.nn.functional.max_pool2d(xt, **kwargs, return_indices=True)
    r_out, r_idx = torch.nn.functional.max_pool2d(torch.relu(xt), **kwargs, return_indices=True)
    identity = np.ones((2, 1, 1, 1))  # with groups=2: each channel times 1, infinities too
    with use_backend(backend):
        out, idx = F.max_pool2d(x, **kwargs, return_indices=True)
        fused, fused_idx = F.conv2d_relu_max_pool2d(
            x,
            identity,
            None,
            groups=2,
            kernel_size=2,
            pool_stride=2,
            pool_padding=pad,
            ceil_mode=ceil_mode,
        )
    np.testing.assert_array_equal(out, t_out.numpy())  # NaN where torch has NaN
    np.testing.assert_array_equal(idx, t_idx.numpy())
    np.testing.assert_array_equal(fused, r_out.numpy())
    np.testing.assert_array_equal(fused_idx, r_idx.numpy())
