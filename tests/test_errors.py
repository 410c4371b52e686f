"""Bad arguments: a ValueError or TypeError that names the op (or the layer), what was expected
and what came; never an IndexError, a Numba error or a silently wrong answer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn import functional as F
from minicnn import nn, use_backend
from tests.helpers import compare_with_torch
from tests.strategies_nn import op_calls

BACKENDS = ["numpy", "numba"]

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 6, 6))  # (N, C, H, W)
W = rng.standard_normal((4, 3, 3, 3))  # (C_out, C_in, kH, kW)
G4 = np.ones((2, 4, 4, 4))  # conv2d(X, W)'s output shape
G3 = np.ones((2, 3, 3, 3))  # a pool of X with kernel 2
Z = rng.standard_normal((4, 5))  # logits (N, C)
Y = np.array([0, 1, 2, 4])  # class indices (N,)
LW = rng.standard_normal((2, 5))  # linear weight (out, in)
F32 = np.float32


def raises(error, *fragments):
    """pytest.raises matching every fragment (in any order) of the message."""
    return pytest.raises(error, match="".join(f"(?=[\\s\\S]*{re.escape(f)})" for f in fragments))


FUNCTIONAL = [
    # wrong ndim, for each op
    (lambda: F.conv2d(X[0, 0], W), ValueError, "conv2d", "(N, C, H, W)", "2-d"),
    (lambda: F.conv2d(X, W[0]), ValueError, "conv2d", "weight of shape", "3-d"),
    (lambda: F.max_pool2d(X[None], 2), ValueError, "max_pool2d", "(N, C, H, W)", "5-d"),
    (lambda: F.avg_pool2d(X[0, 0], 2), ValueError, "avg_pool2d", "(N, C, H, W)", "2-d"),
    (lambda: F.linear(np.array(1.0), LW), ValueError, "linear", "(*, 5)", "0-d"),
    (lambda: F.linear(Z, LW[0]), ValueError, "linear", "(out, in)", "1-d"),
    (lambda: F.softmax(np.array(1.0), 0), ValueError, "softmax", "at least one dimension"),
    (lambda: F.log_softmax(Z, 2), ValueError, "log_softmax", "dim", "[-2, 1]", "2"),
    (lambda: F.cross_entropy(np.array(1.0), Y), ValueError, "cross_entropy", "scalar"),
    (lambda: F.flatten(Z, 3), ValueError, "flatten", "start_dim", "[-2, 1]"),
    # shapes that do not fit together
    (lambda: F.conv2d(X[:, :2], W), ValueError, "conv2d", "3 channels", "got 2 channels"),
    (lambda: F.conv2d(X, W, np.ones(3)), ValueError, "conv2d", "bias of shape (4,)", "(3,)"),
    (lambda: F.conv2d(X[..., :2, :2], W), ValueError, "conv2d", "(2 x 2)", "(3 x 3)"),
    (lambda: F.max_pool2d(X, 7), ValueError, "max_pool2d", "output size", "too small"),
    (lambda: F.avg_pool2d(X, (7, 2)), ValueError, "avg_pool2d", "output size", "too small"),
    (lambda: F.max_pool2d(X, 3, padding=2), ValueError, "max_pool2d", "half of kernel", "(2, 2)"),
    (lambda: F.avg_pool2d(X, 2, padding=(0, 2)), ValueError, "avg_pool2d", "half of kernel"),
    (lambda: F.linear(Z[:, :4], LW), ValueError, "linear", "(*, 5)", "(4, 4)"),
    # non-positive sizes, groups, padding forms
    (lambda: F.conv2d(X, W, stride=0), ValueError, "conv2d", "stride must be positive", "0"),
    (lambda: F.conv2d(X, W, dilation=(1, -1)), ValueError, "conv2d", "dilation", "positive"),
    (lambda: F.conv2d(X, W, padding=-1), ValueError, "conv2d", "padding", "non-negative"),
    (lambda: F.max_pool2d(X, 0), ValueError, "max_pool2d", "kernel_size must be positive"),
    (lambda: F.max_pool2d(X, 2, stride=-1), ValueError, "max_pool2d", "stride", "positive"),
    (lambda: F.max_pool2d(X, 2, dilation=0), ValueError, "max_pool2d", "dilation", "positive"),
    (lambda: F.avg_pool2d(X, (2, 0)), ValueError, "avg_pool2d", "kernel_size", "positive"),
    (lambda: F.avg_pool2d(X, 2, divisor_override=0), ValueError, "avg_pool2d", "divisor"),
    (lambda: F.conv2d(X, W, groups=2), ValueError, "conv2d", "divisible by groups (2)"),
    (lambda: F.conv2d(X, W[:, :1], groups=3), ValueError, "conv2d", "(4)", "groups (3)"),
    (lambda: F.conv2d(X, W, groups=0), ValueError, "conv2d", "groups", "positive", "0"),
    (lambda: F.conv2d(X, W, stride=2, padding="same"), ValueError, "conv2d", "'same'", "strided"),
    (lambda: F.conv2d(X, W, padding="full"), ValueError, "conv2d", "'valid', 'same'", "'full'"),
    (lambda: F.conv2d(X, W, stride=(1, 1, 1)), ValueError, "conv2d", "pair", "(1, 1, 1)"),
    (lambda: F.conv2d(X, W, stride=1.0), TypeError, "conv2d", "stride to be an int", "1.0"),
    (lambda: F.max_pool2d(X, 2, ceil_mode=1), TypeError, "max_pool2d", "ceil_mode", "bool"),
    # targets
    (lambda: F.cross_entropy(Z, Y + 1), ValueError, "cross_entropy", "target 5", "[0, 4]"),
    (lambda: F.cross_entropy(Z, -Y), ValueError, "cross_entropy", "target -1", "out of bounds"),
    (lambda: F.cross_entropy(Z, Y[:3]), ValueError, "cross_entropy", "target of shape (4,)"),
    (lambda: F.cross_entropy(Z, Y > 0), TypeError, "cross_entropy", "integer", "bool"),
    (lambda: F.cross_entropy(Z, Y.astype(str)), TypeError, "cross_entropy", "integer", "<U"),
    (lambda: F.cross_entropy(Z, Z[:, :2]), ValueError, "cross_entropy", "(4, 5)", "(4, 2)"),
    (lambda: F.cross_entropy(Z, Y, weight=np.ones(4)), ValueError, "cross_entropy", "(5,)"),
    (lambda: F.cross_entropy(Z, Y, reduction="avg"), ValueError, "cross_entropy", "'avg'"),
    (lambda: F.cross_entropy(Z, Y, reduction=None), ValueError, "cross_entropy", "'mean'"),
    (lambda: F.cross_entropy(Z, Y, label_smoothing=1.5), ValueError, "cross_entropy", "1.5"),
    (lambda: F.cross_entropy(Z, Y, ignore_index=1.0), TypeError, "cross_entropy", "ignore_index"),
    # probabilities
    (lambda: F.dropout(X, 1.5), ValueError, "dropout", "between 0 and 1", "1.5"),
    (lambda: F.dropout(X, -0.1), ValueError, "dropout", "between 0 and 1", "-0.1"),
    (lambda: F.dropout(X, float("nan")), ValueError, "dropout", "between 0 and 1", "nan"),
    (lambda: F.dropout(X, "0.5"), TypeError, "dropout", "float", "'0.5'"),
    (lambda: F.dropout_backward(X, X > 0, p=2.0), ValueError, "dropout_backward", "2.0"),
    (lambda: F.dropout_mask((2, 3), 1.1), ValueError, "dropout_mask", "1.1"),
    (lambda: F.dropout(X, 0.5, mask=X), ValueError, "dropout", "only 0 and 1"),
    (lambda: F.dropout(X, 0.5, mask=X[0] > 0), ValueError, "dropout", "mask of shape"),
    # dtypes: integers, float16, a mix of float32 and float64
    (lambda: F.conv2d(X.astype(int), W), TypeError, "conv2d", "float32 or float64", "int64"),
    (lambda: F.conv2d(X, W.astype(np.float16)), TypeError, "conv2d", "weight", "float16"),
    (lambda: F.conv2d(X.astype(F32), W), TypeError, "conv2d", "float32", "weight is float64"),
    (lambda: F.conv2d(X, W, np.ones(4, F32)), TypeError, "conv2d", "bias is float32"),
    (lambda: F.max_pool2d(X.astype(np.float16), 2), TypeError, "max_pool2d", "float16"),
    (lambda: F.avg_pool2d(X.astype(np.int32), 2), TypeError, "avg_pool2d", "int32"),
    (lambda: F.relu(X.astype(int)), TypeError, "relu", "float32 or float64", "int64"),
    (lambda: F.linear(Z.astype(F32), LW), TypeError, "linear", "float32", "float64"),
    (lambda: F.softmax(Z.astype(np.float16), 1), TypeError, "softmax", "float16"),
    (lambda: F.log_softmax(Y, 0), TypeError, "log_softmax", "int64"),
    (lambda: F.dropout(X.astype(bool), 0.5), TypeError, "dropout", "bool"),
    (lambda: F.cross_entropy(Z.astype(int), Y), TypeError, "cross_entropy", "int64"),
    (lambda: F.cross_entropy(Z, Y, np.ones(5, F32)), TypeError, "cross_entropy", "weight"),
    (lambda: F.cross_entropy(Z, Z.astype(F32)), TypeError, "cross_entropy", "target is float32"),
    # not arrays
    (lambda: F.conv2d(X.tolist(), W), TypeError, "conv2d", "numpy array", "list"),
    (lambda: F.conv2d(X, W, [0.0] * 4), TypeError, "conv2d", "bias", "list"),
    (lambda: F.max_pool2d(X.tolist(), 2), TypeError, "max_pool2d", "numpy array", "list"),
    (lambda: F.avg_pool2d(None, 2), TypeError, "avg_pool2d", "numpy array", "NoneType"),
    (lambda: F.relu([1.0, -1.0]), TypeError, "relu", "numpy array", "list"),
    (lambda: F.linear(Z, LW.tolist()), TypeError, "linear", "weight", "list"),
    (lambda: F.flatten([[1.0]]), TypeError, "flatten", "numpy array", "list"),
    (lambda: F.dropout([1.0], 0.5), TypeError, "dropout", "numpy array", "list"),
    (lambda: F.softmax(3.0, 0), TypeError, "softmax", "numpy array", "float"),
    (lambda: F.cross_entropy(Z.tolist(), Y), TypeError, "cross_entropy", "numpy array", "list"),
    (lambda: F.cross_entropy(Z, Y.tolist()), TypeError, "cross_entropy", "target", "list"),
    # grad_output of the wrong shape (or dtype, or kind), in every backward function
    (lambda: F.conv2d_backward(G3, X, W), ValueError, "conv2d_backward", "(2, 4, 4, 4)"),
    (lambda: F.conv2d_backward(G4.astype(F32), X, W), TypeError, "conv2d_backward", "float32"),
    (lambda: F.max_pool2d_backward(G4, X, 2), ValueError, "max_pool2d_backward", "(2, 3, 3, 3)"),
    (lambda: F.avg_pool2d_backward(G3[0], X, 2), ValueError, "avg_pool2d_backward", "3-d"),
    (lambda: F.relu_backward(X[0], X), ValueError, "relu_backward", "(2, 3, 6, 6)"),
    (lambda: F.relu_backward(X.tolist(), X), TypeError, "relu_backward", "list"),
    (lambda: F.linear_backward(Z, Z, LW), ValueError, "linear_backward", "(4, 2)", "(4, 5)"),
    (lambda: F.dropout_backward(X, X[0] > 0), ValueError, "dropout", "(2, 3, 6, 6)"),
    (lambda: F.softmax_backward(Z.T, Z, 1), ValueError, "softmax_backward", "(4, 5)", "(5, 4)"),
    (lambda: F.log_softmax_backward(Z[0], Z, 1), ValueError, "log_softmax_backward", "1-d"),
    (lambda: F.cross_entropy_backward(Y * 1.0, Z, Y), ValueError, "cross_entropy_backward", "()"),
    (
        lambda: F.cross_entropy_backward(np.ones(3), Z, Y, reduction="none"),
        ValueError,
        "cross_entropy_backward",
        "(4,)",
        "(3,)",
    ),
    (lambda: F.cross_entropy_backward(None, Z, Y), TypeError, "cross_entropy_backward", "None"),
    (lambda: F.cross_entropy_backward("1", Z, Y), TypeError, "cross_entropy_backward", "str"),
    (
        lambda: F.max_pool2d_backward(G3, X, 2, indices=G3),
        TypeError,
        "max_pool2d_backward",
        "integer indices",
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", FUNCTIONAL, ids=lambda case: "-".join(case[2:4]))
def test_functional_ops_report_bad_arguments(backend, case):
    call, error, *fragments = case
    with use_backend(backend), raises(error, *fragments):
        call()


def _run(module: nn.Module, *inputs) -> nn.Module:
    module(*inputs)
    return module


X32 = X.astype(F32)
MODULES = [
    (lambda: nn.Conv2d(3, 4, 3)(X32[0, 0]), ValueError, "Conv2d(3, 4", "conv2d", "2-d"),
    (lambda: nn.Conv2d(2, 4, 3)(X32), ValueError, "Conv2d(2, 4", "2 channels", "got 3"),
    (lambda: nn.Conv2d(3, 4, 7)(X32), ValueError, "Conv2d(3, 4", "(6 x 6)", "(7 x 7)"),
    (lambda: nn.Conv2d(3, 4, 3)(X.astype(int)), TypeError, "Conv2d(3, 4", "int64"),
    (lambda: nn.Conv2d(3, 4, 3)(X.tolist()), TypeError, "Conv2d(3, 4", "list"),
    (lambda: nn.MaxPool2d(7)(X32), ValueError, "MaxPool2d(kernel_size=(7, 7)", "too small"),
    (lambda: nn.MaxPool2d(2)(X32[0, 0]), ValueError, "MaxPool2d(", "2-d"),
    (lambda: nn.AvgPool2d(2)(X.astype(np.float16)), TypeError, "AvgPool2d(", "float16"),
    (lambda: nn.Linear(4, 2)(Z.astype(F32)), ValueError, "Linear(in_features=4", "(4, 5)"),
    (lambda: nn.ReLU()([1.0]), TypeError, "ReLU()", "list"),
    (lambda: nn.Flatten(4)(X32), ValueError, "Flatten(start_dim=4", "out of range"),
    (lambda: nn.Dropout()(X.astype(int)), TypeError, "Dropout(p=0.5", "int64"),
    (lambda: nn.CrossEntropyLoss()(Z, Y + 1), ValueError, "CrossEntropyLoss(", "target 5"),
    (lambda: nn.CrossEntropyLoss()(Z, Y * 1.0), ValueError, "CrossEntropyLoss(", "(4,)"),
    (lambda: nn.CrossEntropyLoss()(Z, Y[:, None]), ValueError, "CrossEntropyLoss(", "(4, 1)"),
    # inside a Sequential, the layer that failed is the one named
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(9, 2))(X32), ValueError, "Linear(in_features=9"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", MODULES, ids=lambda case: "-".join(case[2:4]))
def test_modules_name_the_failing_layer(backend, case):
    call, error, *fragments = case
    with use_backend(backend), raises(error, *fragments):
        call()


BACKWARDS = [  # a gradient of the wrong shape: the message must name the layer and the shape
    (
        lambda: _run(nn.Conv2d(3, 4, 3), X32).backward(G3.astype(F32)),
        ValueError,
        "Conv2d(3, 4",
        "(2, 4, 4, 4)",
    ),
    (
        lambda: _run(nn.Linear(5, 2), Z.astype(F32)).backward(Z.astype(F32)),
        ValueError,
        "Linear(",
        "(4, 2)",
    ),
    (lambda: _run(nn.MaxPool2d(2), X).backward(G4), ValueError, "MaxPool2d(", "(2, 3, 3, 3)"),
    (lambda: _run(nn.AvgPool2d(2), X).backward(G4), ValueError, "AvgPool2d(", "(2, 3, 3, 3)"),
    (lambda: _run(nn.ReLU(), X).backward(G3), ValueError, "ReLU()", "(2, 3, 6, 6)"),
    (lambda: _run(nn.Flatten(), X).backward(G3), ValueError, "Flatten(", "(2, 108)"),
    (lambda: _run(nn.Dropout(), X).backward(G3), ValueError, "Dropout(", "(2, 3, 6, 6)"),
    (
        lambda: _run(nn.CrossEntropyLoss(reduction="none"), Z, Y).backward(np.ones(3)),
        ValueError,
        "CrossEntropyLoss(",
        "(4,)",
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", BACKWARDS, ids=lambda case: case[2].split("(")[0])
def test_module_backward_names_the_layer(backend, case):
    call, error, *fragments = case
    with use_backend(backend), raises(error, *fragments, "grad"):
        call()


CONSTRUCTORS = [
    (lambda: nn.Conv2d(0, 4, 3), ValueError, "Conv2d", "in_channels", "positive"),
    (lambda: nn.Conv2d(3, -1, 3), ValueError, "Conv2d", "out_channels", "-1"),
    (lambda: nn.Conv2d(3.0, 4, 3), TypeError, "Conv2d", "in_channels", "int"),
    (lambda: nn.Conv2d(3, 4, (3, 0)), ValueError, "Conv2d", "kernel_size", "positive"),
    (lambda: nn.Conv2d(3, 4, (1, 2, 3)), ValueError, "Conv2d", "kernel_size", "pair"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, "Conv2d", "stride", "positive"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-2), ValueError, "Conv2d", "padding", "non-negative"),
    (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, "Conv2d", "'full'"),
    (lambda: nn.Conv2d(3, 4, 3, 2, "same"), ValueError, "Conv2d", "'same'", "strided"),
    (lambda: nn.Conv2d(3, 4, 3, dilation=0), ValueError, "Conv2d", "dilation", "positive"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "Conv2d", "divisible by groups (2)"),
    (lambda: nn.Conv2d(3, 3, 3, groups=0), ValueError, "Conv2d", "groups", "positive"),
    (lambda: nn.Conv2d(3, 4, 3, dtype=np.float16), TypeError, "Conv2d", "float16"),
    (lambda: nn.MaxPool2d(0), ValueError, "MaxPool2d", "kernel_size", "positive"),
    (lambda: nn.MaxPool2d(2, stride=0), ValueError, "MaxPool2d", "stride", "positive"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, "MaxPool2d", "half of kernel"),
    (lambda: nn.MaxPool2d(2, dilation=-1), ValueError, "MaxPool2d", "dilation", "positive"),
    (lambda: nn.MaxPool2d(2, ceil_mode="yes"), TypeError, "MaxPool2d", "ceil_mode", "bool"),
    (lambda: nn.AvgPool2d((2, -1)), ValueError, "AvgPool2d", "kernel_size", "positive"),
    (lambda: nn.AvgPool2d(3, padding=(0, 2)), ValueError, "AvgPool2d", "half of kernel"),
    (lambda: nn.AvgPool2d(2, divisor_override=0), ValueError, "AvgPool2d", "divisor_override"),
    (lambda: nn.AvgPool2d(2, count_include_pad=1), TypeError, "AvgPool2d", "count_include_pad"),
    (lambda: nn.Linear(0, 2), ValueError, "Linear", "in_features", "positive"),
    (lambda: nn.Linear(2, 2.5), TypeError, "Linear", "out_features", "2.5"),
    (lambda: nn.Linear(2, 2, dtype=np.int64), TypeError, "Linear", "int64"),
    (lambda: nn.Flatten(1.0), TypeError, "Flatten", "start_dim", "int"),
    (lambda: nn.Dropout(1.5), ValueError, "Dropout", "between 0 and 1", "1.5"),
    (lambda: nn.Dropout(None), TypeError, "Dropout", "float", "None"),
    (lambda: nn.CrossEntropyLoss(reduction="avg"), ValueError, "CrossEntropyLoss", "'avg'"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=-0.5), ValueError, "CrossEntropyLoss", "-0.5"),
    (lambda: nn.CrossEntropyLoss(weight=[1.0]), TypeError, "CrossEntropyLoss", "list"),
    (lambda: nn.CrossEntropyLoss(ignore_index=0.5), TypeError, "CrossEntropyLoss", "ignore"),
    (lambda: nn.Sequential(nn.ReLU(), np.tanh), TypeError, "Sequential", "argument 1", "Module"),
]


@pytest.mark.parametrize("case", CONSTRUCTORS, ids=lambda case: "-".join(case[2:4]))
def test_invalid_constructor_arguments(case):
    call, error, *fragments = case
    with raises(error, *fragments):
        call()


def _outcome(name: str, call, kwargs: dict):
    """('ok', shapes and dtypes) or (error type, message); only ValueError/TypeError may escape."""
    try:
        with np.errstate(all="ignore"):  # inf and NaN inputs are allowed to overflow
            result = call(**kwargs)
    except (ValueError, TypeError) as error:
        op = name.removesuffix("_backward")
        assert op in str(error), f"{name}: the message does not name the op: {error!r}"
        return type(error), str(error)
    results = result if isinstance(result, tuple) else (result,)
    return "ok", [(np.shape(r), getattr(r, "dtype", None)) for r in results]


@given(case=op_calls(), seed=st.integers(0, 2**32 - 1))
def test_fuzzed_calls_raise_only_value_or_type_errors(case, seed):
    # any other exception (IndexError, ZeroDivisionError, a Numba error) fails the test; both
    # backends must agree on what happens
    name, call, kwargs = case
    outcomes = []
    for backend in BACKENDS:
        with use_backend(backend):
            outcomes.append(_outcome(name, call, dict(kwargs, **_seeded(name, seed))))
    assert outcomes[0] == outcomes[1], f"{name}: the backends disagree: {outcomes}"


@pytest.mark.parametrize(
    "make",
    [
        lambda p: F.dropout(np.ones(3), p=p),
        lambda p: nn.Dropout(p),
        lambda p: nn.CrossEntropyLoss(label_smoothing=p),
        lambda p: F.cross_entropy(np.ones((2, 3)), np.array([0, 1]), label_smoothing=p),
    ],
    ids=["F.dropout", "nn.Dropout", "nn.CrossEntropyLoss", "F.cross_entropy"],
)
def test_a_probability_too_large_for_a_float_is_a_value_error(make):
    # found by the fuzz test drawing fresh examples: float(10**400) raised OverflowError
    for p in (10**400, -(10**400)):
        with pytest.raises(ValueError, match="between 0 and 1"):
            make(p)


def _seeded(name: str, seed: int) -> dict:
    # dropout draws a mask when it is not given one: the same draw for both backends
    return {"generator": np.random.default_rng(seed)} if name in ("dropout", "dropout_mask") else {}


DEGENERATE = [  # valid in torch, so valid here: 0-d arrays, empty batches, empty feature axes
    ("relu", (np.array(-1.5),), {}),
    ("relu", (np.array(2.5),), {}),
    ("conv2d", (np.ones((0, 3, 6, 6)), W), {}),
    ("max_pool2d", (np.ones((0, 3, 6, 6)),), dict(kernel_size=2)),
    ("avg_pool2d", (np.ones((0, 3, 6, 6)),), dict(kernel_size=2)),
    ("linear", (np.ones((3, 0)), np.ones((2, 0)), np.ones(2)), {}),
    ("linear", (np.ones((3, 2)), np.ones((0, 2))), {}),
    ("softmax", (np.ones((2, 0)),), dict(dim=1)),
    ("log_softmax", (np.ones(0),), dict(dim=0)),
    ("cross_entropy", (np.ones((0, 3)), np.zeros(0, dtype=np.int64)), dict(reduction="sum")),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", DEGENERATE, ids=lambda case: case[0])
def test_degenerate_shapes_work_like_torch(backend, case):
    name, arrays, kwargs = case
    with use_backend(backend):
        compare_with_torch(name, *arrays, **kwargs)
        mask = np.array(True)
        assert F.dropout(np.array(2.0), 0.5, mask=mask).shape == ()
        assert F.dropout_backward(np.array(2.0), mask, 0.5).shape == ()


def test_numba_num_threads_zero_is_one_clear_line():
    env = {**os.environ, "NUMBA_NUM_THREADS": "0", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", "import minicnn"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: minicnn: NUMBA_NUM_THREADS='0': expected a whole number >= 1; unset it or "
        "set it to the number of threads to use"
    )
    assert "numba" not in done.stderr  # stopped before Numba's own import


def test_a_read_only_install_without_a_cache_directory_still_imports_and_runs(tmp_path):
    # Numba refused cache=True at `import minicnn` when no directory could hold its cache
    # (root writes through any mode bits, so a file named __pycache__ stands in for read-only)
    copy = tmp_path / "install"
    shutil.copytree(
        Path(__file__).parents[1] / "minicnn",
        copy / "minicnn",
        ignore=shutil.ignore_patterns("__pycache__", "*.gz"),
    )
    for folder in [copy / "minicnn", *(copy / "minicnn").rglob("*")]:
        if folder.is_dir():
            (folder / "__pycache__").touch()
    env = {
        **{k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"},
        "PYTHONPATH": str(copy),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/dev/null",
        "XDG_CACHE_HOME": "/dev/null/cache",
    }
    code = "import numpy, minicnn; print(minicnn.functional.relu(numpy.array([-1.0, 2.0])))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=copy,  # (python -c puts the working directory first on the path)
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0. 2.]"
    assert "Traceback" not in done.stderr and "NUMBA_CACHE_DIR=DIR" in done.stderr
