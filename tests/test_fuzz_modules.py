"""Fuzzed modules and optimizers: wrong constructor arguments, inputs, gradients, state dicts and
hyperparameters give a ValueError or TypeError that names the layer or optimizer, and a call
that fails changes nothing. A backward pass without its forward pass is a RuntimeError, as in
torch (the call order is wrong, not an argument). Any other exception fails the test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import nn, optim, use_backend
from tests.strategies_modules import (
    build,
    module_cases,
    optimizer_cases,
    wrong_optimizer_state,
    wrong_state,
)
from tests.strategies_nn import wrong


def snapshot(module: nn.Module) -> list:
    return [(name, p.data.dtype, p.data.tobytes()) for name, p in module.named_parameters()]


def assert_names_a_layer(error: Exception, module: nn.Module) -> None:
    text = str(error)
    names = {type(m).__name__ for m in module.modules()}
    assert any(name in text for name in names), f"no layer of {names} named: {error!r}"


def grad_for(module: nn.Module, out) -> np.ndarray | None:
    """A valid grad_output for ``out`` (None: a loss's default of 1)."""
    if isinstance(module, nn.CrossEntropyLoss) and module.reduction != "none":
        return None
    return np.ones(np.shape(out), dtype=out.dtype)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@given(case=module_cases(), training=st.booleans(), data=st.data())
def test_fuzzed_modules_raise_only_value_or_type_errors(backend, case, training, data):
    kind, kwargs, inputs, what = case
    try:
        module = build(kind, kwargs)
    except (ValueError, TypeError) as error:
        assert what == "build", f"a valid {kind} was refused: {error!r}"
        assert kind in str(error), f"the message does not name {kind}: {error!r}"
        return
    module.train(training)
    with use_backend(backend), np.errstate(all="ignore"):  # inf and NaN may overflow
        if what == "order":
            _backward_out_of_order(module, inputs)
        elif what == "state":
            state = {key: value.copy() for key, value in module.state_dict().items()}
            _load_wrong_state(module, data.draw(wrong_state(state)))
        else:
            _forward_and_backward(module, inputs, what, data)


def _forward_and_backward(module, inputs, what, data) -> None:
    before = snapshot(module)
    try:
        out = module(*inputs)
    except (ValueError, TypeError) as error:
        # a wrong constructor argument may build a valid layer the input does not fit
        assert what in ("forward", "build"), f"a valid call was refused: {error!r}"
        assert_names_a_layer(error, module)
        assert snapshot(module) == before, "a refused forward pass changed the parameters"
        return
    grad = grad_for(module, out)
    if what == "backward" and grad is not None:
        grad = data.draw(wrong(grad))
    try:
        grad_input = module.backward(grad) if grad is not None else module.backward()
    except (ValueError, TypeError) as error:
        assert what == "backward", f"a valid backward pass was refused: {error!r}"
        assert_names_a_layer(error, module)
        return
    x = inputs[0]
    assert grad_input.shape == np.shape(x), "the input gradient has another shape than the input"
    assert grad_input.dtype.kind == "f"


def _backward_out_of_order(module, inputs) -> None:
    name = type(module).__name__
    grad = np.ones((1,), np.float32)
    with pytest.raises(RuntimeError, match=rf"{name}.backward.*without a forward"):
        module.backward(grad)  # before any forward pass
    out = module(*inputs)
    grad = grad_for(module, out)
    module.backward(*([] if grad is None else [grad]))
    with pytest.raises(RuntimeError, match=rf"{name}.backward.*(twice|without a forward)"):
        module.backward(*([] if grad is None else [grad]))  # its forward pass is used up


def _load_wrong_state(module, state) -> None:
    before = snapshot(module)
    try:
        module.load_state_dict(state)
    except (ValueError, TypeError) as error:
        assert f"{type(module).__name__}.load_state_dict" in str(error), repr(error)
        assert snapshot(module) == before, "a refused state dict changed the parameters"
        return
    for name, param in module.state_dict().items():  # accepted: every value was taken over
        expected = np.asarray(state[name])
        assert np.array_equal(param, expected, equal_nan=True), name


@given(case=optimizer_cases(), data=st.data())
def test_fuzzed_optimizers_raise_only_value_or_type_errors(case, data):
    name, params, kwargs, what = case
    try:
        optimizer = getattr(optim, name)(params, **kwargs)
    except (ValueError, TypeError) as error:
        assert what == "build", f"a valid {name} was refused: {error!r}"
        assert name in str(error), f"the message does not name {name}: {error!r}"
        return
    values = [p.data.copy() for p in params]
    with np.errstate(all="ignore"):
        try:
            optimizer.step()
        except (ValueError, TypeError) as error:
            assert what == "step", f"a valid step was refused: {error!r}"
            assert name in str(error), f"the message does not name {name}: {error!r}"
            for param, value in zip(params, values):
                np.testing.assert_array_equal(param.data, value, "a refused step moved a param")
            assert not optimizer.state, "a refused step created state"
            return
    if what != "state":
        return
    saved = optimizer.state_dict()
    try:
        optimizer.load_state_dict(data.draw(wrong_optimizer_state(optimizer.state_dict())))
    except (ValueError, TypeError) as error:
        assert name in str(error), f"the message does not name {name}: {error!r}"
        np.testing.assert_equal(optimizer.state_dict(), saved, "a refused state dict was taken")
        return
    with np.errstate(all="ignore"):
        optimizer.step()  # an accepted state dict must be one the optimizer can step with


X = np.random.default_rng(0).standard_normal((2, 3, 6, 6))  # (N, C, H, W)
W = np.random.default_rng(1).standard_normal((4, 3, 3, 3))  # (C_out, C_in, kH, kW)
G = np.ones((2, 4, 4, 4))  # conv2d(X, W)'s output shape


def _adam_loading(state_dict):
    return optim.Adam([nn.Parameter(np.zeros(2))]).load_state_dict(state_dict)


FOUND = [  # what the fuzz tests above found, each pinned as one call
    (lambda: F.avg_pool2d(X, 1, divisor_override=2**63), ValueError, "avg_pool2d", "64-bit"),
    (lambda: F.conv2d(X, W, stride=2**40), ValueError, "conv2d", "stride must be at most"),
    (lambda: F.conv2d(X, W, padding=10**6), ValueError, "conv2d", "machine's memory"),
    (
        lambda: F.conv2d_backward(G, X, W, output_mask=None),
        TypeError,
        "conv2d_backward",
        "output_mask",
    ),
    (lambda: nn.Conv2d(3, 4, 3, dtype="bogus"), TypeError, "Conv2d", "dtype", "'bogus'"),
    (lambda: nn.Conv2d(3, 4, 3, bias=np.ones(2)), TypeError, "Conv2d", "bias", "bool"),
    (lambda: nn.Linear(2, 2, generator=0), TypeError, "Linear", "generator", "int"),
    (lambda: nn.Linear(10**6, 10**6), ValueError, "Linear", "weight", "memory"),
    (lambda: nn.ReLU().load_state_dict({"x": X}), ValueError, "ReLU.load_state_dict", "['x']"),
    (
        lambda: _adam_loading({"state": {}, "param_groups": None}),
        TypeError,
        "Adam",
        "'param_groups' must be a list",
    ),
    (
        lambda: _adam_loading({"state": {}, "param_groups": [{"params": [[0]]}]}),
        TypeError,
        "Adam",
        "parameter indices",
    ),
    (
        lambda: _adam_loading({"state": {0: {"step": 1.0}}, "param_groups": [{"params": [0]}]}),
        ValueError,
        "Adam",
        "lacks ['exp_avg', 'exp_avg_sq']",
    ),
    (lambda: optim.SGD([nn.Parameter(np.zeros(2))], lr=10**400), ValueError, "SGD", "too large"),
    (
        lambda: optim.SGD([nn.Parameter(np.zeros(2))], nesterov="False"),
        TypeError,
        "SGD",
        "nesterov must be a bool",
    ),
]


@pytest.mark.parametrize("case", FOUND, ids=lambda case: "-".join(case[2:4]))
def test_what_the_fuzzing_found(case):
    call, error, *fragments = case
    with pytest.raises(error) as raised:
        call()
    assert all(fragment in str(raised.value) for fragment in fragments), raised.value


def test_a_refused_call_changes_nothing():
    layer = nn.Linear(3, 2, generator=np.random.default_rng(0))
    before = snapshot(layer)
    with pytest.raises(ValueError, match="'bias' has shape"):  # weight fits, bias does not
        layer.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(3)})
    assert snapshot(layer) == before
    eval_dropout = nn.Dropout().eval()
    eval_dropout(X)
    with pytest.raises(ValueError, match="Dropout.backward: expected grad_output of shape"):
        eval_dropout.backward(X[0])  # the identity, but only for a gradient of the right shape
    first, second = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(3))
    first.grad, second.grad = np.ones(2), np.ones(2)  # the second gradient has the wrong shape
    optimizer = optim.SGD([first, second], lr=0.1)
    with pytest.raises(ValueError, match=r"gradient of shape \(2,\) for a parameter of shape"):
        optimizer.step()
    assert not first.data.any(), "the first parameter moved before the second was refused"
