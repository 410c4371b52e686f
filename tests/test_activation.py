"""relu, linear, flatten, dropout, softmax and log_softmax against torch and their twins."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import use_backend
from tests.helpers import assert_close, compare_with_torch, term_scales
from tests.strategies import any_arrays, linear_cases

BACKENDS = ["numpy", "numba"]


@pytest.mark.parametrize("backend", BACKENDS)
@given(x=any_arrays())
def test_relu_matches_torch(backend, x):
    x[..., 0] = 0.0  # exactly zero: relu'(0) is 0 in torch
    with use_backend(backend):
        compare_with_torch("relu", x)


def test_relu_keeps_nan_and_blocks_infinite_gradients():
    x = np.array([np.nan, -1.0, 0.0, 2.0])
    for backend in BACKENDS:
        with use_backend(backend):
            out = F.relu(x)
            grad = F.relu_backward(np.array([1.0, np.inf, np.inf, 3.0]), x)
        assert np.isnan(out[0]) and list(out[1:]) == [0.0, 0.0, 2.0]
        # torch zeroes the gradient only where the output is <= 0, which NaN is not
        assert list(grad) == [1.0, 0.0, 0.0, 3.0]


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=linear_cases())
def test_linear_matches_torch(backend, case):
    with use_backend(backend):
        compare_with_torch("linear", *case)


@given(case=linear_cases())
def test_fast_linear_matches_its_twin(case):
    x, w, b = case
    with use_backend("numpy"):
        expected = F.linear(x, w, b)
        grad = np.random.default_rng(0).standard_normal(expected.shape).astype(x.dtype)
        grads = F.linear_backward(grad, x, w)
        scales = term_scales("linear", (x, w, b), grad, {})
    with use_backend("numba"):
        assert_close(F.linear(x, w, b), expected, scale=scales[0])
        for ours, twin, scale in zip(F.linear_backward(grad, x, w), grads, scales[1:]):
            assert_close(ours, twin, scale=scale)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(x=any_arrays(), data=st.data())
def test_softmax_and_log_softmax_match_torch(backend, name, x, data):
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    with use_backend(backend):
        compare_with_torch(name, x, dim=dim)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_saturated_softmax_gradients_match_torch(backend, name):
    # with logits ~30 apart the backward cancels to results far below the terms it sums
    # (|g * y| ~ 1), so errors are measured against that scale: in float64 the answer is
    # then as exact as the terms allow
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 5)) * 30
    g = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    getattr(torch, name)(xt, 1).backward(torch.tensor(g))
    with use_backend(backend):
        y = getattr(F, name)(x, dim=1)
        grad = getattr(F, f"{name}_backward")(g, y, dim=1)
    assert np.abs(grad - xt.grad.numpy()).max() <= 1e-14 * np.abs(g).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_softmax_is_stable_for_huge_logits(backend):
    x = np.array([[1000.0, 0.0, -1000.0]])
    with use_backend(backend):
        out = F.log_softmax(x, dim=1)
        probs = F.softmax(x, dim=1)
    np.testing.assert_allclose(out, [[0.0, -1000.0, -2000.0]])
    np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0]])


@given(x=any_arrays(min_dims=0), data=st.data())
def test_flatten_matches_torch(x, data):
    ndim = max(x.ndim, 1)
    start = data.draw(st.integers(-ndim, ndim - 1))
    end = data.draw(st.integers(start % ndim, ndim - 1))
    expected = torch.flatten(torch.tensor(x), start, end).numpy()
    np.testing.assert_array_equal(F.flatten(x, start, end), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@given(x=any_arrays(), p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), seed=st.integers(0, 99))
def test_dropout_with_torchs_mask_matches_torch(backend, x, p, seed):
    # torch draws its own mask; recover it from where its output is nonzero, give it to
    # minicnn, and both must agree on the output and the gradient
    xt = torch.tensor(x + np.sign(x) * 1e-3 + (x == 0), requires_grad=True)  # no zeros
    torch.manual_seed(seed)
    out_t = torch.nn.functional.dropout(xt, p=p, training=True)
    mask = (out_t != 0).numpy()
    grad = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    out_t.backward(torch.tensor(grad))
    with use_backend(backend):
        xs = xt.detach().numpy()
        assert_close(F.dropout(xs, p=p, mask=mask), out_t)
        assert_close(F.dropout_backward(grad, mask, p=p), xt.grad)


def test_dropout_mask_is_reproducible_and_has_the_right_rate():
    a = F.dropout_mask((1000, 100), 0.3, np.random.default_rng(7))
    b = F.dropout_mask((1000, 100), 0.3, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - 0.7) < 0.01
    x = np.ones((1000, 100), dtype=np.float32)
    out = F.dropout(x, 0.3, generator=np.random.default_rng(7))
    np.testing.assert_array_equal(out != 0, a)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[a], np.float32(1 / 0.7))


def test_dropout_in_eval_mode_is_the_identity():
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert F.dropout(x, 0.5, training=False) is x
