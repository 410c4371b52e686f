"""The module contract: every layer equals its torch.nn twin (forward, input gradient, every
parameter gradient) with torch's weights loaded; parameters, state_dict, gradient accumulation,
zero_grad, train/eval and dtypes behave as torch's do."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import nn, use_backend
from tests.helpers import assert_close, to_numpy
from tests.strategies import (
    any_arrays,
    conv2d_cases,
    cross_entropy_cases,
    linear_cases,
    pool_cases,
)
from tests.strategies_nn import sequential_cases
from tests.test_loss import _term_scales, _torch_kwargs
from tests.test_pool import _outside

BACKENDS = ["numpy", "numba"]
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def both(name: str, *args, dtype=np.float32, **kwargs):
    """(minicnn layer, torch layer): the same class built with the same arguments; torch's
    in ``dtype`` (its weights are loaded into ours by compare_module)."""
    theirs = getattr(torch.nn, name)(*args, **kwargs).to(TORCH_DTYPE[np.dtype(dtype)])
    return getattr(nn, name)(*args, **kwargs), theirs


def term_scales(theirs, x: np.ndarray, grad: np.ndarray) -> dict[str, float]:
    """The largest sum of |terms| behind the output, the input gradient and each parameter
    gradient: torch's module in float64 on |x|, |weights| and |grad|. A float32 sum that cancels
    is only as exact as its terms (see ``assert_close``'s scale)."""
    absolute = copy.deepcopy(theirs).double()
    with torch.no_grad():
        for param in absolute.parameters():
            param.abs_()
    xt = torch.tensor(np.abs(x), dtype=torch.float64, requires_grad=True)
    out = absolute(xt)
    out.backward(torch.tensor(np.abs(grad), dtype=torch.float64))
    grads = {"input": xt.grad, **{name: p.grad for name, p in absolute.named_parameters()}}
    return {
        "output": float(out.detach().abs().max()),
        **{k: float(g.abs().max()) for k, g in grads.items()},
    }


def compare_module(ours, theirs, x: np.ndarray, seed: int = 0) -> None:
    """``compare_module_with_torch`` with every error measured against ``term_scales``: give
    ``ours`` torch's parameters, then compare output, input gradient and every parameter
    gradient (by name) after one backward pass with a random grad_output."""
    ours.load_state_dict({k: to_numpy(v) for k, v in theirs.state_dict().items()})
    out = ours(x)
    xt = torch.tensor(x, requires_grad=True)
    out_t = theirs(xt)
    grad = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    scales = term_scales(theirs, x, grad)
    name = type(ours).__name__
    assert_close(out, out_t, f"{name} forward", scale=scales["output"])
    grad_x = ours.backward(grad)
    out_t.backward(torch.tensor(grad))
    assert_close(grad_x, xt.grad, f"{name} input gradient", scale=scales["input"])
    torch_params = dict(theirs.named_parameters())
    for key, param in ours.named_parameters():
        assert_close(param.grad, torch_params[key].grad, f"{name}.{key}.grad", scale=scales[key])


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=conv2d_cases())
def test_conv2d_module_matches_torch(backend, case):
    x, w, b, kwargs = case
    C_out, Cg, kH, kW = w.shape
    ours, theirs = both(
        "Conv2d",
        Cg * kwargs["groups"],
        C_out,
        (kH, kW),
        bias=b is not None,
        dtype=x.dtype,
        **kwargs,
    )
    with use_backend(backend):
        compare_module(ours, theirs, x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["max", "avg"])
@given(data=st.data())
def test_pool_modules_match_torch(backend, kind, data):
    x, kwargs = data.draw(pool_cases(kind))
    ours, theirs = both("MaxPool2d" if kind == "max" else "AvgPool2d", **kwargs)
    with use_backend(backend):
        if kind == "max" and _outside(F.max_pool2d(x, **kwargs, return_indices=True)[1], x):
            # a window entirely in the padding: torch's backward would write out of bounds
            assert_close(ours(x), theirs(torch.tensor(x)), "forward")
            return
        compare_module(ours, theirs, x)


@pytest.mark.parametrize("backend", BACKENDS)
@given(x=any_arrays())
def test_relu_module_matches_torch(backend, x):
    x[..., 0] = 0.0  # relu'(0) = 0, as torch
    with use_backend(backend):
        compare_module(*both("ReLU"), x)


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=linear_cases())
def test_linear_module_matches_torch(backend, case):
    x, w, b = case
    ours, theirs = both("Linear", w.shape[1], w.shape[0], bias=b is not None, dtype=x.dtype)
    with use_backend(backend):
        compare_module(ours, theirs, x)


@given(x=any_arrays(min_dims=2), data=st.data())
def test_flatten_module_matches_torch(x, data):
    start = data.draw(st.integers(0, x.ndim - 1))
    end = data.draw(st.integers(start, x.ndim - 1))
    start -= data.draw(st.sampled_from([0, x.ndim]))  # the same axis, counted from the end
    compare_module(*both("Flatten", start, end), x)


class SeededDropout(torch.nn.Dropout):
    """torch's Dropout drawing the same mask on every call."""

    def __init__(self, p: float, seed: int):
        super().__init__(p)
        self.seed = seed

    def forward(self, x):
        torch.manual_seed(self.seed)
        return super().forward(x)


@pytest.mark.parametrize("backend", BACKENDS)
@given(
    x=any_arrays(),
    p=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
    training=st.booleans(),
)
def test_dropout_module_matches_torch(backend, x, p, seed, training):
    x = x + np.sign(x) * 1e-3 + (x == 0)  # no zeros: torch's mask is where its output is not 0
    theirs = SeededDropout(p, seed).train(training)
    mask = to_numpy(theirs(torch.tensor(x)) != 0)
    ours = nn.Dropout(p).train(training)
    ours.mask_source = lambda shape: mask
    with use_backend(backend):
        compare_module(ours, theirs, x)
    if not training:
        assert ours(x) is x or np.array_equal(ours(x), x)  # the identity


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=sequential_cases())
def test_sequential_matches_torch(backend, case):
    layers, x = case
    ours = nn.Sequential(*(getattr(nn, name)(*args, **kw) for name, args, kw in layers))
    theirs = torch.nn.Sequential(
        *(getattr(torch.nn, name)(*args, **kw) for name, args, kw in layers)
    ).to(TORCH_DTYPE[x.dtype])
    with use_backend(backend):
        compare_module(ours, theirs, x)


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=cross_entropy_cases())
def test_cross_entropy_loss_module_matches_torch(backend, case):
    logits, target, kwargs = case
    ours = nn.CrossEntropyLoss(**kwargs)
    theirs = torch.nn.CrossEntropyLoss(**_torch_kwargs(kwargs))
    xt = torch.tensor(logits, requires_grad=True)
    expected = theirs(xt, torch.tensor(target))
    with use_backend(backend):
        loss = ours(logits, target)
        grad = np.random.default_rng(0).standard_normal(loss.shape).astype(loss.dtype)
        with np.errstate(divide="ignore"):  # every row ignored: an infinite upstream, unused
            loss_scale, grad_scale = _term_scales(logits, target, kwargs, grad)
        assert_close(loss, expected, "loss", scale=loss_scale)
        expected.backward(torch.tensor(grad))
        assert_close(ours.backward(grad), xt.grad, "input gradient", scale=grad_scale)


# -- parameters, state_dict, gradients ---------------------------------------------------------


def _shared(lib):
    """Two structures that register one Linear under two names."""
    lin = lib.Linear(3, 3)
    model = lib.Module()
    model.a = lin
    model.b = lib.Sequential(lin)
    return lib.Sequential(lin, lib.ReLU(), lin), model


def test_a_shared_parameter_is_yielded_once_but_saved_under_every_name():
    for ours, theirs in zip(_shared(nn), _shared(torch.nn), strict=True):
        assert len(list(ours.parameters())) == len(list(theirs.parameters())) == 2
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
        assert list(ours.state_dict()) == list(theirs.state_dict())
        ours.load_state_dict({k: to_numpy(v) for k, v in theirs.state_dict().items()})
    assert list(_shared(nn)[0].state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert list(_shared(nn)[1].state_dict()) == ["a.weight", "a.bias", "b.0.weight", "b.0.bias"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_module_used_twice_gets_both_uses_gradients_like_torch(backend):
    ours, theirs = _shared(nn)[0], _shared(torch.nn)[0].double()
    x = np.random.default_rng(0).standard_normal((4, 3))
    with use_backend(backend):
        compare_module(ours, theirs, x)


def _small(lib):
    return lib.Sequential(
        lib.Conv2d(2, 3, 3, bias=False), lib.ReLU(), lib.Flatten(), lib.Linear(12, 4)
    )


def test_state_dict_keys_and_names_equal_torchs():
    ours, theirs = _small(nn), _small(torch.nn)
    assert (
        list(ours.state_dict()) == list(theirs.state_dict()) == ["0.weight", "3.weight", "3.bias"]
    )
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for name, tensor in theirs.state_dict().items():
        assert ours.state_dict()[name].shape == tuple(tensor.shape), name
    assert ours.state_dict()["3.weight"] is ours[3].weight.data  # the arrays, not copies
    assert ours[0].bias is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_accumulate_over_two_backward_passes_like_torch(backend):
    ours, theirs = _small(nn), _small(torch.nn).double()
    ours.load_state_dict({k: to_numpy(v) for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(1)
    with use_backend(backend):
        for _ in range(2):
            x, g = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((2, 4))
            ours(x)
            ours.backward(g)
            theirs(torch.tensor(x)).backward(torch.tensor(g))
    expected = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        assert_close(param.grad, expected[name].grad, name)


def test_zero_grad_sets_none_by_default_and_zeros_when_asked():
    model = _small(nn)
    assert all(p.grad is None for p in model.parameters())
    model(np.ones((1, 2, 4, 4), np.float32))
    model.backward(np.ones((1, 4), np.float32))
    model.zero_grad(set_to_none=False)
    for p in model.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and not p.grad.any()
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_train_and_eval_reach_every_submodule():
    dropout = nn.Dropout(0.9)
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), dropout))
    assert all(m.training for m in model.modules())
    assert model.eval() is model and not any(m.training for m in model.modules())
    x = np.ones((8, 4), np.float32)
    np.testing.assert_array_equal(dropout(x), x)  # the identity in eval mode
    np.testing.assert_array_equal(dropout.backward(x), x)
    model.train()
    assert all(m.training for m in model.modules()) and (dropout(x) == 0).any()


def test_load_state_dict_checks_keys_and_shapes_and_keeps_float64():
    model = nn.Linear(3, 2)
    state = {"weight": np.ones((2, 3)), "bias": np.ones(2)}  # float64
    with pytest.raises(KeyError, match=r"missing keys \['bias'\]"):
        model.load_state_dict({"weight": state["weight"]})
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        model.load_state_dict({**state, "extra": np.ones(1)})
    with pytest.raises(ValueError, match=r"'weight' has shape \(3, 2\).*expects \(2, 3\)"):
        model.load_state_dict({**state, "weight": np.ones((3, 2))})
    assert model.load_state_dict({"weight": state["weight"]}, strict=False) == (["bias"], [])
    model.load_state_dict(state)
    assert model.weight.dtype == model.bias.dtype == np.float64  # loaded without rounding
    assert model(np.ones((1, 3))).dtype == np.float64


def test_modules_are_float32_by_default_and_float64_on_request():
    x = np.ones((1, 2, 4, 4), np.float32)
    for model in (_small(nn), nn.Sequential(nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Dropout())):
        assert all(p.dtype == np.float32 for p in model.parameters())
        out = model(x)
        assert out.dtype == model.backward(np.ones_like(out)).dtype == np.float32
    conv = nn.Conv2d(2, 3, 3, dtype=np.float64)
    assert conv.weight.dtype == conv.bias.dtype == np.float64
    assert conv(x.astype(np.float64)).dtype == conv(x).dtype == np.float64


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(1, 1, 1),
        nn.Linear(1, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.MaxPool2d(1),
        nn.AvgPool2d(1),
        nn.Dropout(),
        nn.Sequential(nn.Linear(1, 1)),
        nn.CrossEntropyLoss(),
    ],
)
def test_backward_before_forward_is_a_clear_error(layer):
    with pytest.raises(RuntimeError, match=rf"{type(layer).__name__}.backward.*forward"):
        layer.backward(np.ones((1, 1, 1, 1), np.float32))
