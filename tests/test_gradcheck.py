"""Central differences in float64 against every backward function, and against a whole model's
backward pass (conv2d has its own check in test_conv.py)."""

from __future__ import annotations

import numpy as np
import pytest

from minicnn import functional as F
from minicnn import nn, use_backend
from minicnn.teach.gradcheck import numerical_gradient

BACKENDS = ["numpy", "numba"]


def gradcheck(forward, backward, *arrays, seed: int = 0) -> None:
    """``backward(r)`` must return the gradients of ``sum(forward() * r)`` with respect to
    ``arrays`` (in order) for a random r; each is compared with central differences."""
    out = forward()
    assert np.isfinite(out).all(), "pick a case with a finite output"
    r = np.random.default_rng(seed).standard_normal(np.shape(out))

    def loss() -> float:
        return float((forward() * r).sum())

    for i, (array, grad) in enumerate(zip(arrays, backward(r), strict=True)):
        expected = numerical_gradient(loss, array)
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7, err_msg=f"argument {i}")


def _distinct(shape, seed: int = 0) -> np.ndarray:
    """Values 0.1 apart: no central difference (eps 1e-6) can change a max-pool winner."""
    values = np.random.default_rng(seed).permutation(int(np.prod(shape))) * 0.1 - 1.0
    return values.reshape(shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
        dict(kernel_size=2, stride=1, dilation=(2, 1), ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, dilation=2),
    ],
)
def test_max_pool2d_gradcheck(backend, kwargs):
    x = _distinct((2, 3, 7, 6))
    with use_backend(backend):
        gradcheck(
            lambda: F.max_pool2d(x, **kwargs), lambda r: [F.max_pool2d_backward(r, x, **kwargs)], x
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), count_include_pad=False),
        dict(kernel_size=2, divisor_override=3),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=2),
    ],
)
def test_avg_pool2d_gradcheck(backend, kwargs):
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    with use_backend(backend):
        gradcheck(
            lambda: F.avg_pool2d(x, **kwargs), lambda r: [F.avg_pool2d_backward(r, x, **kwargs)], x
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_gradcheck(backend):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.1, 2.0, (3, 4, 5)) * rng.choice([-1.0, 1.0], (3, 4, 5))  # away from 0
    with use_backend(backend):
        gradcheck(lambda: F.relu(x), lambda r: [F.relu_backward(r, x)], x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lead", [(5,), (2, 3)])
def test_linear_gradcheck(backend, lead):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((*lead, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    with use_backend(backend):
        gradcheck(lambda: F.linear(x, w, b), lambda r: F.linear_backward(r, x, w), x, w, b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_and_log_softmax_gradcheck(backend, name, dim):
    x = np.random.default_rng(4).standard_normal((3, 4, 5)) * 2
    forward, backward = getattr(F, name), getattr(F, f"{name}_backward")
    with use_backend(backend):
        gradcheck(lambda: forward(x, dim), lambda r: [backward(r, forward(x, dim), dim)], x)


def _ce_case(layout: str):
    rng = np.random.default_rng(5)
    weight = rng.uniform(0.5, 2.0, 4)
    if layout == "probabilities":
        probs = rng.uniform(size=(3, 4))
        return rng.standard_normal((3, 4)), probs / probs.sum(axis=1, keepdims=True), weight
    shape = {"NC": (5, 4), "C": (4,), "NCd": (3, 4, 2)}[layout]
    target = rng.integers(0, 4, size=shape[:1] + shape[2:] if len(shape) > 1 else ())
    return rng.standard_normal(shape) * 2, target, weight


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["NC", "C", "NCd", "probabilities"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(weight=True, reduction="sum"),
        dict(weight=True, label_smoothing=0.2),
        dict(ignore_index=1, label_smoothing=0.1, reduction="none"),
        dict(weight=True, ignore_index=2, reduction="mean"),
    ],
)
def test_cross_entropy_gradcheck(backend, layout, kwargs):
    z, target, weight = _ce_case(layout)
    kwargs = dict(kwargs, weight=weight if kwargs.get("weight") else None)
    if layout == "probabilities":
        kwargs.pop("ignore_index", None)  # only class-index targets are ignored
    with use_backend(backend):
        gradcheck(
            lambda: F.cross_entropy(z, target, **kwargs),
            lambda r: [F.cross_entropy_backward(r, z, target, **kwargs)],
            z,
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_gradcheck_with_a_fixed_mask(backend, p):
    rng = np.random.default_rng(6)
    x, mask = rng.standard_normal((4, 6)), rng.random((4, 6)) < 0.6
    with use_backend(backend):
        gradcheck(lambda: F.dropout(x, p, mask=mask), lambda r: [F.dropout_backward(r, mask, p)], x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_model_gradcheck(backend):
    # d loss / d (input and every parameter) of Conv2d-ReLU-MaxPool2d-Flatten-Linear with
    # CrossEntropyLoss, numerically, against the modules' backward passes
    rng = np.random.default_rng(7)
    model = nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), padding=1, dtype=np.float64, generator=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 4, dtype=np.float64, generator=rng),
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    x, target = rng.standard_normal((2, 2, 6, 5)), np.array([1, 3])
    with use_backend(backend):

        def loss() -> float:
            return float(criterion(model(x), target))

        loss()
        grad_x = model.backward(criterion.backward())
        np.testing.assert_allclose(grad_x, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8)
        for name, param in model.named_parameters():
            np.testing.assert_allclose(
                param.grad, numerical_gradient(loss, param.data), rtol=1e-6, atol=1e-8, err_msg=name
            )
