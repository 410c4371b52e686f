"""cross_entropy against torch: reductions, class weights, ignore_index, label smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given

from minicnn import functional as F
from minicnn import nn, use_backend
from tests.helpers import assert_close, compare_with_torch
from tests.strategies import cross_entropy_cases

BACKENDS = ["numpy", "numba"]


def _term_scales(logits, target, kwargs, grad) -> tuple[float, float]:
    """The scales rounding errors are proportional to (see helpers.assert_close).

    The loss: each row's -log p is log(sum exp(z - max)) - (z - max), with a sum >= 1, so
    float32 cannot place it closer than its ulp at 1 times the row's weight (a loss of 1e-4
    is known only to ~1e-3 of itself, in torch as here). The gradient p * sum(t) - t cancels
    terms of size |upstream| * sum(t).
    """
    C = logits.shape[1] if logits.ndim > 1 else logits.shape[0]
    e = kwargs.get("label_smoothing", 0.0)
    w = kwargs.get("weight", np.ones(C))
    if np.issubdtype(target.dtype, np.floating):
        rows = np.moveaxis(target, 1, -1).reshape(-1, C) if logits.ndim > 1 else target[None]
        totals = ((rows * (1 - e) + e / C) * w).sum(axis=1)
        denominator = len(rows)
    else:
        flat = target.reshape(-1)
        keep = flat != kwargs.get("ignore_index", -100)
        totals = np.where(keep, (1 - e) * w[np.where(keep, flat, 0)] + e / C * w.sum(), 0)
        denominator = w[flat[keep]].sum()
    mean = kwargs["reduction"] == "mean"
    loss_scale = float(w.max()) * (len(totals) if kwargs["reduction"] == "sum" else 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # every row ignored: no gradient
        upstream = np.abs(grad).max() / (denominator if mean else 1)
    grad_scale = float(upstream * totals.max(initial=0)) if np.isfinite(upstream) else 0.0
    return loss_scale, grad_scale


def _torch_kwargs(kwargs):
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=cross_entropy_cases())
def test_cross_entropy_matches_torch(backend, case):
    logits, target, kwargs = case
    xt = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(xt, torch.tensor(target), **_torch_kwargs(kwargs))
    with use_backend(backend):
        loss = F.cross_entropy(logits, target, **kwargs)
        grad = np.random.default_rng(0).standard_normal(loss.shape).astype(loss.dtype)
        loss_scale, grad_scale = _term_scales(logits, target, kwargs, grad)
        assert_close(loss, expected, "loss", scale=loss_scale)
        expected.backward(torch.tensor(grad))
        ours = F.cross_entropy_backward(grad, logits, target, **kwargs)
    assert_close(ours, xt.grad, "gradient", scale=grad_scale)


@given(case=cross_entropy_cases())
def test_fast_cross_entropy_matches_its_twin(case):
    logits, target, kwargs = case
    with use_backend("numpy"):
        loss = F.cross_entropy(logits, target, **kwargs)
        grad = F.cross_entropy_backward(np.ones_like(loss), logits, target, **kwargs)
    loss_scale, grad_scale = _term_scales(logits, target, kwargs, np.ones_like(loss))
    with use_backend("numba"):
        assert_close(F.cross_entropy(logits, target, **kwargs), loss, scale=loss_scale)
        assert_close(
            F.cross_entropy_backward(np.ones_like(loss), logits, target, **kwargs),
            grad,
            scale=grad_scale,
        )


def test_cross_entropy_of_a_batch_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]: the loss of class 1 is -ln(3/4), its gradient p - onehot
    logits = np.array([[0.0, np.log(3.0)]])
    target = np.array([1])
    assert np.isclose(F.cross_entropy(logits, target), -np.log(0.75))
    np.testing.assert_allclose(
        F.cross_entropy_backward(np.array(1.0), logits, target), [[0.25, -0.25]]
    )


def test_all_rows_ignored_gives_nan_like_torch():
    logits = np.zeros((2, 3))
    target = np.array([-100, -100])
    assert np.isnan(F.cross_entropy(logits, target))
    assert np.isnan(torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(target)))


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=np.float32)
    loss = F.cross_entropy(logits, np.array([1, 1]))
    assert np.isfinite(loss) and np.isclose(loss, 1e4)


def test_module_backward_defaults_to_a_unit_gradient():
    criterion = nn.CrossEntropyLoss()
    logits = np.random.default_rng(0).standard_normal((4, 10))
    target = np.array([1, 2, 3, 4])
    xt = torch.tensor(logits, requires_grad=True)
    torch.nn.CrossEntropyLoss()(xt, torch.tensor(target)).backward()
    criterion(logits, target)
    compare = criterion.backward()
    assert_close(compare, xt.grad)
    compare_with_torch("cross_entropy", logits, target, label_smoothing=0.2)
