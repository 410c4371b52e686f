"""Parameter: a trainable array and its accumulated gradient; and what ``load_state_dict``
accepts as a parameter's new values."""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Parameter:
    """A trainable array: ``.data`` holds the values, ``.grad`` the accumulated gradient.

    ``.grad`` is ``None`` until a backward pass writes it, as in torch.
    """

    def __init__(self, data: np.ndarray):
        data = np.asarray(data)
        if data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter: expected float32 or float64 data, got {data.dtype}")
        self.data = data
        self.grad: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def accumulate_grad(self, grad: np.ndarray) -> None:
        """Add ``grad`` into ``.grad`` (creating it on the first call)."""
        if grad.shape != self.data.shape:
            raise ValueError(
                f"Parameter: gradient of shape {grad.shape} for a parameter of shape "
                f"{self.data.shape}"
            )
        if self.grad is None:
            self.grad = np.array(grad, dtype=self.data.dtype, copy=True)
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class StateDictKeyError(ValueError, KeyError):
    """``load_state_dict`` was given missing or unexpected names: a bad argument, so a
    ValueError, and a KeyError too, for code that catches what a missing name raises."""

    __str__ = BaseException.__str__  # KeyError's would quote the whole message


def loadable(value, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    """``value`` as a float32 or float64 array of ``shape``, or a ValueError/TypeError."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # e.g. ragged nested lists
        raise ValueError(f"{where}: {key!r} is not an array ({error})") from None
    native = array.dtype.newbyteorder("=")
    if native == np.float16:
        native = np.dtype(np.float32)
    if native not in FLOAT_DTYPES:
        raise TypeError(
            f"{where}: {key!r} has dtype {array.dtype}, expected float32 or float64 (or float16, "
            f"loaded as float32)"
        )
    if array.shape != shape:
        raise ValueError(f"{where}: {key!r} has shape {array.shape}, the model expects {shape}")
    return array.astype(native, copy=False)
