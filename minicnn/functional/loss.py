"""cross_entropy (softmax + negative log-likelihood in one stable step) and its backward."""

from __future__ import annotations

import numbers

import numpy as np

from minicnn import kernels
from minicnn.functional import _checks as check
from minicnn.functional.activation import log_softmax, softmax
from minicnn.kernels import softmax as S

REDUCTIONS = ("mean", "sum", "none")


def _check_ce(op, input, target, weight, ignore_index, reduction, label_smoothing):
    """Validated (rows (M, C), target (M,) int64 or probabilities (M, C), weight, …)."""
    z = check.float_array(input, "input", op)
    if z.ndim < 1:
        raise ValueError(
            f"{op}: expected input of shape (N, C), (C,) or (N, C, d1, ...), got a scalar"
        )
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:  # (an array: elementwise)
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    smoothing = check.probability(label_smoothing, "label_smoothing", op)
    ignore_index = check.integer(ignore_index, "ignore_index", op)
    C = z.shape[1] if z.ndim > 1 else z.shape[0]
    if C == 0:
        raise ValueError(f"{op}: expected at least one class, got input of shape {z.shape}")
    if weight is not None:
        weight = check.float_array(weight, "weight", op)
        if weight.shape != (C,):
            raise ValueError(
                f"{op}: expected weight of shape ({C},), one per class, got "
                f"{check.describe(weight)}"
            )
        check.same_dtype(op, z, weight=weight)
        weight = np.ascontiguousarray(weight)
    if not isinstance(target, np.ndarray):
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            target = np.asarray(target)
        else:
            raise TypeError(
                f"{op}: expected target to be a numpy array of class indices, got "
                f"{type(target).__name__}"
            )
    class_dim = 1 if z.ndim > 1 else 0
    rows = np.ascontiguousarray(np.moveaxis(z, class_dim, -1)).reshape(-1, C)  # (M, C)
    if np.issubdtype(target.dtype, np.floating):
        if target.shape != z.shape:
            raise ValueError(
                f"{op}: class-probability targets must have the input's shape {z.shape}, got "
                f"{target.shape}"
            )
        check.same_dtype(op, z, target=target)
        probs = np.ascontiguousarray(np.moveaxis(target, class_dim, -1)).reshape(-1, C)
        return rows, probs, weight, ignore_index, smoothing, True
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"{op}: expected integer class indices as target, got {target.dtype}")
    expected = (z.shape[0], *z.shape[2:]) if z.ndim > 1 else ()
    if target.shape != expected:
        raise ValueError(
            f"{op}: expected target of shape {expected} for input of shape {z.shape}, got "
            f"{check.describe(target)}"
        )
    target = target.astype(np.int64).reshape(-1)  # (M,)
    bad = (target != ignore_index) & ((target < 0) | (target >= C))
    if bad.any():
        raise ValueError(
            f"{op}: target {int(target[bad][0])} is out of bounds: class indices must lie in "
            f"[0, {C - 1}] for {C} classes (or equal ignore_index={ignore_index})"
        )
    return rows, target, weight, ignore_index, smoothing, False


def cross_entropy(
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """Softmax cross-entropy between logits and targets, as ``torch.nn.functional.cross_entropy``.

    Args:
        input: logits (N, C), (C,) or (N, C, d1, ...).
        target: class indices (N,), () or (N, d1, ...), or class probabilities of the input's
            shape.
        weight: a rescaling weight per class (C,), or None.
        ignore_index: a target value whose rows contribute nothing (class-index targets).
        reduction: ``'mean'`` (weighted mean over the non-ignored rows), ``'sum'`` or
            ``'none'`` (a loss per row).
        label_smoothing: e in [0, 1]: the target becomes (1 - e) * one_hot + e / C.

    Shape:
        a 0-d array for 'mean' and 'sum'; the target's (index) shape for 'none'.
    """
    rows, target, weight, ignore_index, e, probabilities = _check_ce(
        "cross_entropy", input, target, weight, ignore_index, reduction, label_smoothing
    )
    M, C = rows.shape
    if probabilities:
        w = 1.0 if weight is None else weight  # (C,)
        smoothed = target * (1 - e) + e / C  # (M, C)
        losses = -(log_softmax(rows, dim=1) * smoothed * w).sum(axis=1)  # (M,)
        denominator = M
    else:
        kernel = kernels.pick(S.cross_entropy_numpy, S.cross_entropy_numba)
        losses, w_y = kernel(rows, target, weight, ignore_index, e)  # (M,), (M,)
        denominator = w_y.sum()
    if reduction == "none":
        z_shape = np.shape(input)
        return losses.reshape((z_shape[0], *z_shape[2:]) if len(z_shape) > 1 else ())
    total = losses.sum()
    if reduction == "sum":
        return np.asarray(total, dtype=rows.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):  # all rows ignored: NaN, as torch
        return np.asarray(total / denominator, dtype=rows.dtype)


def cross_entropy_backward(
    grad_output,
    input: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """Gradient of ``cross_entropy`` with respect to the logits (the input's shape).

    For one row without weights or smoothing this is ``softmax(z) - one_hot(y)``, scaled by
    ``grad_output`` (and divided by the row count for 'mean').
    """
    op = "cross_entropy_backward"
    rows, target, weight, ignore_index, e, probabilities = _check_ce(
        op, input, target, weight, ignore_index, reduction, label_smoothing
    )
    M, C = rows.shape
    z_shape = np.shape(input)
    loss_shape = (z_shape[0], *z_shape[2:]) if len(z_shape) > 1 else ()
    if isinstance(grad_output, bool) or not isinstance(grad_output, (np.ndarray, numbers.Real)):
        # np.asarray would turn None into NaN and "1" into a message without the op's name
        raise TypeError(
            f"{op}: expected grad_output to be a numpy array or a number, got "
            f"{type(grad_output).__name__}"
        )
    if isinstance(grad_output, np.ndarray) and grad_output.dtype.kind not in "fiu":
        raise TypeError(f"{op}: expected a numeric grad_output, got {grad_output.dtype}")
    g = np.asarray(grad_output, dtype=rows.dtype)
    if g.shape != (loss_shape if reduction == "none" else ()):
        raise ValueError(
            f"{op}: expected grad_output of shape {loss_shape if reduction == 'none' else ()} "
            f"for reduction={reduction!r}, got {g.shape}"
        )
    if probabilities:
        w = np.ones(C, dtype=rows.dtype) if weight is None else weight
        smoothed = target * (1 - e) + e / C  # (M, C)
        denominator = M
    else:
        keep = target != ignore_index  # (M,)
        w = np.ones(C, dtype=rows.dtype) if weight is None else weight
        denominator = w[target[keep]].sum()  # what the mean divided by
    if reduction == "none":
        per_row = g.reshape(-1)  # (M,)
    elif reduction == "sum":
        per_row = np.full(M, g, dtype=rows.dtype)
    else:
        # every row ignored: the loss is NaN but nothing depends on the logits, as in torch
        per_row = np.full(M, g / denominator if denominator else 0, dtype=rows.dtype)
    if probabilities:
        p = softmax(rows, dim=1)  # (M, C)
        grad_rows = p * (smoothed * w).sum(axis=1, keepdims=True) - smoothed * w
        grad_rows = grad_rows * per_row[:, None]
    else:
        kernel = kernels.pick(S.cross_entropy_backward_numpy, S.cross_entropy_backward_numba)
        grad_rows = kernel(rows, target, weight, ignore_index, e, per_row.astype(rows.dtype))
    class_dim = 1 if len(z_shape) > 1 else 0
    moved = grad_rows.reshape(*z_shape[:class_dim], *z_shape[class_dim + 1 :], C)
    return np.ascontiguousarray(np.moveaxis(moved, -1, class_dim)).astype(rows.dtype)
