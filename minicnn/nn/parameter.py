"""Parameter: a trainable array and its accumulated gradient."""

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
