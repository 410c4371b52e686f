"""relu, linear, flatten, dropout, softmax and log_softmax, each with its backward."""

from __future__ import annotations

import numpy as np

from minicnn import kernels
from minicnn.functional import _checks as check
from minicnn.kernels import elementwise as E
from minicnn.kernels import linear as L
from minicnn.kernels import softmax as S
from minicnn.random import resolve


def relu(input: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` elementwise; NaN stays NaN. Shape: any, unchanged."""
    x = check.contiguous(check.float_array(input, "input", "relu"))
    return kernels.pick(E.relu_forward_numpy, E.relu_forward_numba)(x)


def relu_backward(grad_output: np.ndarray, input: np.ndarray) -> np.ndarray:
    """0 where the input was <= 0 (also at exactly 0), ``grad_output`` elsewhere: where it was
    positive, and where it was NaN, as in torch."""
    x = check.contiguous(check.float_array(input, "input", "relu_backward"))
    grad = check.gradient(grad_output, x.shape, x.dtype, "relu_backward")
    return kernels.pick(E.relu_backward_numpy, E.relu_backward_numba)(grad, x)


def _check_linear(op, input, weight, bias):
    x = check.float_array(input, "input", op)
    weight = check.float_array(weight, "weight", op)
    if weight.ndim != 2:
        raise ValueError(f"{op}: expected weight of shape (out, in), got {check.describe(weight)}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: expected input of shape (*, {weight.shape[1]}) for weight of shape "
            f"{weight.shape}, got {check.describe(x)}"
        )
    if bias is not None:
        bias = check.float_array(bias, "bias", op)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"{op}: expected bias of shape ({weight.shape[0]},), got {check.describe(bias)}"
            )
    check.same_dtype(op, x, weight=weight, bias=bias)
    return np.ascontiguousarray(x), np.ascontiguousarray(weight), bias


def linear(input: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``x @ weight.T + bias``, as ``torch.nn.functional.linear``.

    Shape: input (*, in), weight (out, in), bias (out,), out (*, out).
    """
    x, weight, bias = _check_linear("linear", input, weight, bias)
    return kernels.pick(L.linear_forward_numpy, L.linear_forward_numba)(x, weight, bias)


def linear_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    weight: np.ndarray,
    output_mask: tuple[bool, bool, bool] = (True, True, True),
):
    """(grad_input, grad_weight, grad_bias) of ``linear``; masked-out ones come back None."""
    x, weight, _ = _check_linear("linear_backward", input, weight, None)
    expected = (*x.shape[:-1], weight.shape[0])
    grad = check.gradient(grad_output, expected, x.dtype, "linear_backward")
    output_mask = check.output_mask(output_mask, "linear_backward")
    backward = kernels.pick(L.linear_backward_numpy, L.linear_backward_numba)
    grad_x, grad_w, grad_b = backward(grad, x, weight, input_grad=bool(output_mask[0]))
    return grad_x, grad_w if output_mask[1] else None, grad_b if output_mask[2] else None


def flatten(input: np.ndarray, start_dim: int = 0, end_dim: int = -1) -> np.ndarray:
    """Merge dimensions ``start_dim..end_dim`` into one, as ``torch.flatten`` (a view when it
    can be). ``nn.Flatten`` uses ``start_dim=1`` to keep the batch axis."""
    if not isinstance(input, np.ndarray):
        raise TypeError(f"flatten: expected a numpy array, got {type(input).__name__}")
    shape = input.shape if input.ndim else (1,)  # a scalar flattens to one element
    start = _axis(start_dim, len(shape), "start_dim", "flatten")
    end = _axis(end_dim, len(shape), "end_dim", "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
    merged = int(np.prod(shape[start : end + 1]))
    return input.reshape(*shape[:start], merged, *shape[end + 1 :])


def _axis(dim, ndim: int, name: str, op: str) -> int:
    dim = check.integer(dim, name, op)
    if not -ndim <= dim < ndim:
        raise ValueError(
            f"{op}: {name} out of range (expected to be in [{-ndim}, {ndim - 1}]), got {dim}"
        )
    return dim % ndim


def dropout_mask(shape: tuple[int, ...], p: float = 0.5, generator=None) -> np.ndarray:
    """A boolean keep-mask: each entry True with probability ``1 - p``, drawn from
    ``generator`` (a NumPy Generator; None means minicnn's default one)."""
    p = check.probability(p, "dropout probability", "dropout_mask")
    dims = shape if isinstance(shape, (tuple, list)) else (shape,)
    if min((check.integer(d, "shape", "dropout_mask") for d in dims), default=0) < 0:
        raise ValueError(f"dropout_mask: expected a shape of non-negative sizes, got {shape!r}")
    check.allocatable(tuple(dims), np.float64, "dropout_mask", "mask's random draw")
    return resolve(generator).random(tuple(dims)) < 1.0 - p


def _scale(p: float) -> float:
    # torch keeps a fully dropped tensor at 0 instead of dividing by zero
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def dropout(
    input: np.ndarray,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    mask: np.ndarray | None = None,
    generator=None,
) -> np.ndarray:
    """Zero each entry with probability ``p`` and scale the rest by ``1 / (1 - p)``
    (inverted dropout, as torch), so that evaluation needs no rescaling.

    Args:
        p: the drop probability, in [0, 1].
        training: when False, return the input unchanged.
        mask: a boolean keep-mask of the input's shape to use instead of drawing one, for
            reproducible runs (see ``dropout_mask``).
        generator: the NumPy Generator a mask is drawn from (None: minicnn's default).
    """
    p = check.probability(p, "dropout probability", "dropout")
    x = check.float_array(input, "input", "dropout")
    if not check.boolean(training, "training", "dropout"):
        return x
    mask = dropout_mask(x.shape, p, generator) if mask is None else _check_mask(mask, x.shape)
    out = kernels.pick(E.dropout_forward_numpy, E.dropout_forward_numba)(
        check.contiguous(x), mask, _scale(p)
    )
    if inplace:
        x[...] = out
        return x
    return out


def _check_mask(mask, shape) -> np.ndarray:
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"dropout: expected mask to be a numpy array, got {type(mask).__name__}")
    if mask.shape != tuple(shape):
        raise ValueError(f"dropout: expected a mask of shape {tuple(shape)}, got {mask.shape}")
    if mask.dtype != np.bool_:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("dropout: a numeric mask must hold only 0 and 1")
        mask = mask.astype(np.bool_)
    return check.contiguous(mask)


def dropout_backward(grad_output: np.ndarray, mask: np.ndarray, p: float = 0.5) -> np.ndarray:
    """``grad_output * mask / (1 - p)``: the gradient flows only through the kept entries."""
    p = check.probability(p, "dropout probability", "dropout_backward")
    grad = check.float_array(grad_output, "grad_output", "dropout_backward")
    if not isinstance(mask, np.ndarray):
        raise TypeError(
            f"dropout_backward: expected mask to be a numpy array, got {type(mask).__name__}"
        )
    grad = check.gradient(grad, mask.shape, grad.dtype, "dropout_backward")
    mask = _check_mask(mask, grad.shape)
    return kernels.pick(E.dropout_backward_numpy, E.dropout_backward_numba)(grad, mask, _scale(p))


def _rows(op: str, input, dim) -> tuple[np.ndarray, int]:
    """input with ``dim`` moved last, as contiguous (M, C) rows, and the normalised dim."""
    x = check.float_array(input, "input", op)
    if x.ndim == 0:
        raise ValueError(f"{op}: expected an array with at least one dimension, got a scalar")
    dim = _axis(dim, x.ndim, "dim", op)
    moved = np.moveaxis(x, dim, -1)
    rows = int(np.prod(moved.shape[:-1]))  # not -1: the axis may be empty
    return np.ascontiguousarray(moved).reshape(rows, x.shape[dim]), dim


def _unrows(rows: np.ndarray, shape, dim: int) -> np.ndarray:
    moved_shape = (*shape[:dim], *shape[dim + 1 :], shape[dim])
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved_shape), -1, dim))


def softmax(input: np.ndarray, dim: int) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``dim``, computed as ``exp(x - max)`` (no overflow)."""
    z, dim = _rows("softmax", input, dim)
    if z.size == 0:  # nothing to normalise (the kernels read each row's first entry)
        return np.empty_like(z).reshape(input.shape)
    return _unrows(kernels.pick(S.softmax_numpy, S.softmax_numba)(z), input.shape, dim)


def log_softmax(input: np.ndarray, dim: int) -> np.ndarray:
    """``x - max - log(sum(exp(x - max)))`` along ``dim``: stable for any finite logits."""
    z, dim = _rows("log_softmax", input, dim)
    if z.size == 0:  # nothing to normalise (the kernels read each row's first entry)
        return np.empty_like(z).reshape(input.shape)
    return _unrows(kernels.pick(S.log_softmax_numpy, S.log_softmax_numba)(z), input.shape, dim)


def softmax_backward(grad_output: np.ndarray, output: np.ndarray, dim: int) -> np.ndarray:
    """``y * (g - sum(g * y))`` along ``dim``, from softmax's output y."""
    y = check.float_array(output, "output", "softmax_backward")
    g = check.gradient(grad_output, y.shape, y.dtype, "softmax_backward")
    dim = _axis(dim, max(y.ndim, 1), "dim", "softmax_backward")
    return y * (g - (g * y).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad_output: np.ndarray, output: np.ndarray, dim: int) -> np.ndarray:
    """``g - exp(y) * sum(g)`` along ``dim``, from log_softmax's output y."""
    y = check.float_array(output, "output", "log_softmax_backward")
    g = check.gradient(grad_output, y.shape, y.dtype, "log_softmax_backward")
    dim = _axis(dim, max(y.ndim, 1), "dim", "log_softmax_backward")
    return g - np.exp(y) * g.sum(axis=dim, keepdims=True)
