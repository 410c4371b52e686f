"""minicnn.teach.gradcheck and ``minicnn gradcheck``: every layer type is checked, every check
passes, and a deliberately broken backward pass is caught (by its layer and gradient) with exit
code 1.
"""

from __future__ import annotations

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn import nn
from minicnn.teach.gradcheck import (
    check_layer,
    format_table,
    layer_cases,
    numerical_gradient,
    relative_error,
    run_gradchecks,
)
from tests.test_cli import run

LAYER_TYPES = [
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "ReLU",
    "Linear",
    "Flatten",
    "Dropout",
    "CrossEntropyLoss",
]


def test_numerical_gradient_of_a_known_function():
    x = np.array([1.0, -2.0, 0.5])
    grad = numerical_gradient(lambda: float((x**3).sum()), x)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-8)
    assert x.tolist() == [1.0, -2.0, 0.5]  # put back


def test_relative_error():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)


def test_the_cases_cover_every_layer_type_and_conv_and_pool_options():
    names = [name for name, *_ in layer_cases()]
    for kind in LAYER_TYPES:
        assert any(name.startswith(kind) for name in names), kind
    conv = " ".join(n for n in names if n.startswith("Conv2d"))
    assert all(word in conv for word in ("stride=(2, 1)", "padding=", "dilation=", "groups=2"))
    pool = " ".join(n for n in names if n.startswith("MaxPool2d"))
    assert "padding=1" in pool and "dilation=2" in pool and "ceil_mode=True" in pool
    assert "Dropout(0.4), a fixed mask" in names


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_every_gradient_passes(backend):
    with minicnn.use_backend(backend):
        checks = run_gradchecks()
    assert all(check.ok for check in checks), format_table(checks)
    kinds = {(check.layer.split("(")[0], check.parameter) for check in checks}
    assert ("Conv2d", "weight") in kinds and ("Conv2d", "bias") in kinds
    assert ("Linear", "bias") in kinds and ("CrossEntropyLoss", "input") in kinds
    assert max(check.error for check in checks) < 1e-6


def test_a_broken_backward_is_caught(monkeypatch):
    real = F.conv2d_backward

    def off_by_a_little(*args, **kwargs):
        grad_x, grad_w, grad_b = real(*args, **kwargs)
        return grad_x, grad_w * 1.001, grad_b  # a 0.1% error in the weight gradient only

    monkeypatch.setattr(F, "conv2d_backward", off_by_a_little)
    checks = run_gradchecks()
    failed = {(check.layer.split("(")[0], check.parameter) for check in checks if not check.ok}
    assert failed == {("Conv2d", "weight")}
    assert all(1e-4 < check.error < 1e-2 for check in checks if not check.ok)
    assert "FAIL (> 1e-06)" in format_table(checks) and "FAILED" in format_table(checks)


def test_a_missing_gradient_is_caught(monkeypatch):
    monkeypatch.setattr(nn.Linear, "backward", lambda self, grad: np.zeros((4, 5)))
    layer = nn.Linear(5, 3, dtype=np.float64, generator=np.random.default_rng(0))
    checks = check_layer(layer, np.random.default_rng(1).standard_normal((4, 5)))
    assert [(c.parameter, c.ok) for c in checks] == [
        ("input", False),
        ("weight", False),
        ("bias", False),
    ]


def test_check_layer_needs_float64():
    with pytest.raises(TypeError, match="float64"):
        check_layer(nn.ReLU(), np.ones((2, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="parameter weight is float32"):
        check_layer(nn.Linear(2, 2), np.ones((2, 2)))


def test_gradcheck_command_prints_the_table_and_exits_0():
    code, out, _ = run(["gradcheck"])
    assert code == 0
    assert "relative error" in out and "Conv2d(4, 6, (3, 2), stride=(2, 1)" in out
    assert "FAIL" not in out and "gradients within the tolerance" in out


def test_gradcheck_command_exits_1_on_a_broken_backward(monkeypatch):
    monkeypatch.setattr(F, "relu_backward", lambda grad, x: grad)  # forgets the mask
    code, out, _ = run(["gradcheck", "--backend", "numpy"])
    assert code == 1
    assert "numpy kernels" in out and "1 FAILED" in out
    (line,) = [line for line in out.splitlines() if "FAIL (" in line]
    assert line.startswith("ReLU()") and " input " in line


def test_gradcheck_command_rejects_a_bad_tolerance():
    code, _, err = run(["gradcheck", "--tolerance", "0"])
    assert code == 1 and "--tolerance 0.0" in err


def test_gradcheck_help_is_complete():
    code, out, _ = run(["gradcheck", "--help"])
    assert code == 0
    for flag in ("--tolerance", "--eps", "--seed", "--backend {numba,numpy}"):
        assert flag in out
