"""Argument checks shared by the functional ops: every bad argument becomes a ValueError or a
TypeError that names the op, what was expected and what came."""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def describe(array: np.ndarray) -> str:
    return f"a {array.ndim}-d {array.dtype} array of shape {tuple(array.shape)}"


def float_array(value, name: str, op: str) -> np.ndarray:
    """``value`` itself if it is a float32/float64 NumPy array, else a TypeError."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{op}: expected {name} to be a numpy array, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}: expected {name} of dtype float32 or float64, got {value.dtype} "
            f"(convert it with .astype(np.float32) first)"
        )
    return value


def image_batch(value, op: str) -> tuple[np.ndarray, bool]:
    """(x as a contiguous (N, C, H, W) array, whether a batch axis was present)."""
    x = float_array(value, "input", op)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{op}: expected input of shape (N, C, H, W) or (C, H, W), got {describe(x)}"
        )
    batched = x.ndim == 4
    x = x if batched else x[None]
    return np.ascontiguousarray(x), batched


def contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` C-contiguous and of its own shape (``np.ascontiguousarray`` makes 0-d 1-d)."""
    return np.ascontiguousarray(array).reshape(array.shape)


def same_dtype(op: str, reference: np.ndarray, **others: np.ndarray | None) -> None:
    for name, array in others.items():
        if array is not None and array.dtype != reference.dtype:
            raise TypeError(
                f"{op}: input is {reference.dtype} but {name} is {array.dtype}; "
                f"both must have the same dtype"
            )


def integer(value, name: str, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: expected {name} to be an int, got {value!r}")
    return int(value)


def pair(value, name: str, op: str) -> tuple[int, int]:
    """An int or a sequence of two ints, as a pair of ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{op}: expected {name} to be an int or a pair of ints, got {value!r}")
        return integer(value[0], name, op), integer(value[1], name, op)
    if isinstance(value, np.ndarray):
        raise TypeError(f"{op}: expected {name} to be an int or a pair of ints, got an array")
    number = integer(value, name, op)
    return number, number


def positive_pair(value, name: str, op: str) -> tuple[int, int]:
    result = pair(value, name, op)
    if min(result) < 1:
        raise ValueError(f"{op}: {name} must be positive, got {value!r}")
    return result


def non_negative_pair(value, name: str, op: str) -> tuple[int, int]:
    result = pair(value, name, op)
    if min(result) < 0:
        raise ValueError(f"{op}: {name} must be non-negative, got {value!r}")
    return result


def boolean(value, name: str, op: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: expected {name} to be a bool, got {value!r}")
    return bool(value)


def probability(value, name: str, op: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: expected {name} to be a float, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{op}: {name} has to be between 0 and 1, but got {value}")
    return float(value)


def gradient(grad_output, expected_shape: tuple[int, ...], dtype: np.dtype, op: str) -> np.ndarray:
    """grad_output as a contiguous array of the forward output's shape and dtype."""
    grad = float_array(grad_output, "grad_output", op)
    if tuple(grad.shape) != tuple(expected_shape):
        raise ValueError(
            f"{op}: expected grad_output of shape {tuple(expected_shape)} (the forward output), "
            f"got {describe(grad)}"
        )
    if grad.dtype != dtype:
        raise TypeError(f"{op}: grad_output is {grad.dtype} but the input is {dtype}")
    return contiguous(grad)
