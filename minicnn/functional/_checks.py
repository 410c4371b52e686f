"""Argument checks shared by the functional ops: every bad argument becomes a ValueError or a
TypeError that names the op, what was expected and what came."""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# the largest kernel size, stride, padding or dilation: no real image is that large, and the
# kernels multiply two of them in int64 arithmetic, which must not overflow
MAX_SIZE = 2**31 - 1


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
    """``value`` as an int: a bool is not one, and it must fit in 64 bits, as torch's do."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: expected {name} to be an int, got {value!r}")
    if not -(2**63) <= int(value) < 2**63:
        raise ValueError(f"{op}: {name} does not fit in a 64-bit integer: {value!r}")
    return int(value)


def pair(value, name: str, op: str) -> tuple[int, int]:
    """An int or a sequence of two ints, as a pair of ints of at most ``MAX_SIZE``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{op}: expected {name} to be an int or a pair of ints, got {value!r}")
        result = integer(value[0], name, op), integer(value[1], name, op)
    elif isinstance(value, np.ndarray):
        raise TypeError(f"{op}: expected {name} to be an int or a pair of ints, got an array")
    else:
        result = (integer(value, name, op),) * 2
    if max(result) > MAX_SIZE:
        raise ValueError(f"{op}: {name} must be at most {MAX_SIZE}, got {value!r}")
    return result


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


def output_mask(value, op: str) -> tuple[bool, bool, bool]:
    """Which of (grad_input, grad_weight, grad_bias) a backward function computes."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise TypeError(f"{op}: expected output_mask to be three bools, got {value!r}")
    return tuple(boolean(flag, "output_mask", op) for flag in value)


def probability(value, name: str, op: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: expected {name} to be a float, got {value!r}")
    if not 0 <= value <= 1:  # compared as given: float(10**400) would overflow
        raise ValueError(f"{op}: {name} has to be between 0 and 1, but got {value}")
    return float(value)


def allocatable(shape: tuple[int, ...], dtype, op: str, what: str = "output") -> None:
    """ValueError unless an array of ``shape`` and ``dtype`` fits in this machine's memory.

    A huge padding or a tiny stride asks for an output NumPy could only fail to allocate (a
    MemoryError naming no op), or one the kernel could only fill by swapping for hours.
    """
    size = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize  # exact, no overflow
    if size > _physical_memory():
        raise ValueError(
            f"{op}: the {what} would be an array of shape {tuple(shape)} ({size / 2**30:.3g} "
            f"GiB of {np.dtype(dtype)}), more than this machine's memory; check the padding, "
            f"stride and input size"
        )


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: only what NumPy can index
        return np.iinfo(np.intp).max


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
