"""Check every layer's hand-written backward pass against central differences, in float64.

For a layer ``f`` and a random array ``r`` of its output's shape, the scalar
``L = sum(f(x) * r)`` has ``dL/d out = r``, so ``layer.backward(r)`` must return ``dL/dx`` and
leave ``dL/dw`` in every parameter's ``.grad``. Each entry ``a`` of x and of every parameter
is then nudged both ways:

    dL/da ≈ (L(a + eps) - L(a - eps)) / (2 eps)          (error ~ eps², here ~1e-12)

and the two gradients are compared by their relative error

    max |analytic - numeric| / max(max |analytic|, max |numeric|)

which is ~1e-9 when the backward pass is right and ~1 when it is wrong.

    checks = run_gradchecks()         # every layer type, small random shapes
    print(format_table(checks))
    all(check.ok for check in checks)
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import numpy as np

import minicnn
from minicnn import nn

TOLERANCE = 1e-6
EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class GradCheck:
    """One gradient compared: of ``layer``'s ``parameter`` (``'input'``, ``'weight'``,
    ``'bias'``), with its shape, relative error and the tolerance it must meet."""

    layer: str
    parameter: str
    shape: tuple[int, ...]
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.error <= self.tolerance)


def numerical_gradient(f: Callable[[], float], array: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to every entry of ``array``,
    which is changed in place and put back."""
    grad = np.zeros(array.shape, dtype=np.float64)
    flat, flat_grad = array.reshape(-1), grad.reshape(-1)  # views
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``max |a - n| / max(max |a|, max |n|)``; 0 when both are all zeros."""
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    if scale == 0:
        return 0.0
    return float(np.abs(analytic - numeric).max() / scale)


def check_layer(
    layer: nn.Module,
    x: np.ndarray,
    target: np.ndarray | None = None,
    *,
    eps: float = EPS,
    tolerance: float = TOLERANCE,
    seed: int = 0,
    name: str | None = None,
) -> list[GradCheck]:
    """Compare ``layer``'s backward pass with central differences, for its input and for each
    of its parameters (see the module docstring).

    Args:
        layer: a float64 layer; a loss (CrossEntropyLoss) is given its ``target`` too.
        x: its float64 input, changed in place during the check and put back.
        target: the loss's target, or None for other layers.
        name: how the layer is called in the results (default: its repr).
    """
    if not isinstance(layer, nn.Module):
        raise TypeError(f"check_layer: expected a minicnn.nn.Module, got {type(layer).__name__}")
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(
            "check_layer: central differences need a float64 numpy array as x, "
            f"got {getattr(x, 'dtype', type(x).__name__)}"
        )
    args = (x,) if target is None else (x, target)
    params = list(layer.named_parameters())
    for pname, param in params:
        if param.dtype != np.float64:
            raise TypeError(
                f"check_layer: parameter {pname} is {param.dtype}; build the layer "
                "with dtype=np.float64"
            )

    layer.zero_grad()
    out = np.asarray(layer(*args))
    if not np.isfinite(out).all():
        raise ValueError(f"check_layer: {layer!r} gave a non-finite output; pick another input")
    r = np.random.default_rng(seed).standard_normal(out.shape)  # dL/d out
    grad_x = layer.backward(r)

    def loss() -> float:
        with minicnn.no_grad():
            return float((np.asarray(layer(*args)) * r).sum())

    label = repr(layer) if name is None else name
    pairs = [("input", x, grad_x)]
    pairs += [(pname, p.data, p.grad) for pname, p in params]
    checks = []
    for pname, array, analytic in pairs:
        analytic = np.zeros(array.shape) if analytic is None else analytic  # a missing gradient
        error = relative_error(analytic, numerical_gradient(loss, array, eps))
        checks.append(GradCheck(label, pname, tuple(array.shape), error, tolerance))
    return checks


def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.1 apart: no nudge of eps can change which one a max-pool picks."""
    return (rng.permutation(int(np.prod(shape))) * 0.1 - 1.0).reshape(shape)


def layer_cases(seed: int = 0) -> list[tuple[str, nn.Module, np.ndarray, np.ndarray | None]]:
    """``(name, layer, x, target)`` for every layer type, at small random shapes in float64:
    Conv2d with stride, padding, dilation and groups; MaxPool2d with padding, dilation and
    ceil_mode; AvgPool2d; ReLU; Linear; Flatten; Dropout with a fixed mask; CrossEntropyLoss."""
    rng = np.random.default_rng(seed)
    f64 = {"dtype": np.float64, "generator": rng}

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape)

    dropout = nn.Dropout(p=0.4)
    keep = rng.random((3, 5)) < 0.6  # the fixed mask: the same for every nudge
    dropout.mask_source = lambda shape: keep
    away_from_zero = rng.uniform(0.1, 2.0, (2, 3, 4)) * rng.choice([-1.0, 1.0], (2, 3, 4))
    weight = rng.uniform(0.5, 2.0, 5)
    # each name is the layer's constructor call, without the float64 arguments
    return [
        (
            "Conv2d(1, 3, 3, padding=1)",
            nn.Conv2d(1, 3, 3, padding=1, **f64),
            normal(2, 1, 5, 5),
            None,
        ),
        (
            "Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)",
            nn.Conv2d(
                4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, **f64
            ),
            normal(2, 4, 7, 6),
            None,
        ),
        (
            "Conv2d(2, 2, 2, padding='same', dilation=2, bias=False)",
            nn.Conv2d(2, 2, 2, padding="same", dilation=2, bias=False, **f64),
            normal(1, 2, 5, 6),
            None,
        ),
        ("MaxPool2d(2, 2)", nn.MaxPool2d(2, 2), _distinct(rng, (2, 3, 6, 6)), None),
        (
            "MaxPool2d(2, 2, padding=1)",
            nn.MaxPool2d(2, 2, padding=1),
            _distinct(rng, (1, 2, 7, 7)),
            None,
        ),
        (
            "MaxPool2d(3, 2, padding=1, dilation=2, ceil_mode=True)",
            nn.MaxPool2d(3, 2, padding=1, dilation=2, ceil_mode=True),
            _distinct(rng, (2, 2, 9, 8)),
            None,
        ),
        ("AvgPool2d(2)", nn.AvgPool2d(2), normal(2, 3, 6, 6), None),
        (
            "AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)",
            nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
            normal(2, 2, 7, 6),
            None,
        ),
        ("ReLU()", nn.ReLU(), away_from_zero, None),
        ("Linear(5, 3)", nn.Linear(5, 3, **f64), normal(4, 5), None),
        ("Flatten()", nn.Flatten(), normal(2, 3, 2, 2), None),
        ("Dropout(0.4), a fixed mask", dropout, normal(3, 5), None),
        ("CrossEntropyLoss()", nn.CrossEntropyLoss(), normal(4, 5), rng.integers(0, 5, size=4)),
        (
            "CrossEntropyLoss(weight, label_smoothing=0.1)",
            nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1),
            normal(4, 5),
            rng.integers(0, 5, size=4),
        ),
    ]


def run_gradchecks(
    *, eps: float = EPS, tolerance: float = TOLERANCE, seed: int = 0
) -> list[GradCheck]:
    """``check_layer`` on every case of ``layer_cases(seed)``, with the active backend."""
    checks = []
    for name, layer, x, target in layer_cases(seed):
        checks += check_layer(layer, x, target, eps=eps, tolerance=tolerance, seed=seed, name=name)
    return checks


def format_table(checks: list[GradCheck]) -> str:
    """The checks as a table, one gradient a line, and a last line saying how many failed."""
    rows = [("layer", "gradient of", "shape", "relative error", "")]
    for check in checks:
        shape = str(check.shape)
        rows.append(
            (
                check.layer,
                check.parameter,
                shape,
                f"{check.error:.2e}",
                "ok" if check.ok else f"FAIL (> {check.tolerance:.0e})",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    rows.insert(1, tuple("-" * w for w in widths))
    lines = [
        "  ".join(
            cell.rjust(w) if i == 3 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]
    failed = sum(not check.ok for check in checks)
    worst = max((check.error for check in checks), default=0.0)
    lines.append("")
    verdict = f"; {failed} FAILED" if failed else ""
    lines.append(
        f"{len(checks) - failed} of {len(checks)} gradients within the tolerance "
        f"(largest relative error {worst:.2e}){verdict}"
    )
    return "\n".join(lines)


# -- the command line: minicnn gradcheck ----------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``minicnn gradcheck``'s options."""
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        metavar="X",
        help="the largest relative error that passes (default: %(default)s)",
    )
    parser.add_argument(
        "--eps",
        type=float,
        default=EPS,
        metavar="X",
        help="the central differences' step (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seeds the inputs, the weights and the random output gradient each check sends "
        "back (default: %(default)s)",
    )
    parser.add_argument(
        "--backend",
        choices=minicnn.kernels.BACKENDS,
        default=None,
        help="the kernels to check (default: the active backend, numba unless "
        "$MINICNN_BACKEND says otherwise)",
    )


def run_command(args: argparse.Namespace) -> int:
    """``minicnn gradcheck``: print the table; exit code 1 if any gradient fails."""
    if not (args.tolerance > 0 and args.eps > 0):
        raise ValueError(f"--tolerance {args.tolerance} and --eps {args.eps} must be positive")
    backend = args.backend or minicnn.get_backend()
    with minicnn.use_backend(backend):
        checks = run_gradchecks(eps=args.eps, tolerance=args.tolerance, seed=args.seed)
    print(
        f"Central differences (eps {args.eps:g}) against each layer's backward pass, in "
        f"float64, {backend} kernels:\n"
    )
    print(format_table(checks))
    return 0 if all(check.ok for check in checks) else 1
