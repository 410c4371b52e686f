"""Pooling layers: MaxPool2d and AvgPool2d (see ``minicnn.nn.layers`` for the pattern)."""

from __future__ import annotations

import numpy as np

from minicnn import functional as F
from minicnn.functional import _checks as check
from minicnn.nn.layers import _Layer


class _Pool(_Layer):
    def __init__(self, name: str, kernel_size, stride, padding, ceil_mode) -> None:
        super().__init__()
        self.kernel_size = check.positive_pair(kernel_size, "kernel_size", name)
        stride = self.kernel_size if stride is None else stride
        self.stride = check.positive_pair(stride, "stride", name)
        self.padding = check.non_negative_pair(padding, "padding", name)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(
                f"{name}: pad should be at most half of kernel size, but got "
                f"padding={self.padding} for kernel_size={self.kernel_size}"
            )
        self.ceil_mode = check.boolean(ceil_mode, "ceil_mode", name)


class MaxPool2d(_Pool):
    """Max pooling (see ``F.max_pool2d``); the gradient goes to each window's winner.

    Shape:
        input (N, C, H, W) → output (N, C, oH, oW),
        ``oH = floor((H + 2*pH - dH*(kH - 1) - 1) / sH) + 1`` (ceil with ceil_mode).
    """

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False
    ) -> None:
        super().__init__("MaxPool2d", kernel_size, stride, padding, ceil_mode)
        self.dilation = check.positive_pair(dilation, "dilation", "MaxPool2d")

    def _args(self) -> tuple:
        return self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, indices = F.max_pool2d(x, *self._args(), return_indices=True)  # (N, C, oH, oW)
        self.saved = {"input": x, "indices": indices}
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._take_saved()
        return F.max_pool2d_backward(
            grad_output, saved["input"], *self._args(), indices=saved["indices"]
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(_Pool):
    """Average pooling (see ``F.avg_pool2d``).

    Shape:
        input (N, C, H, W) → output (N, C, oH, oW), ``oH = floor((H + 2*pH - kH) / sH) + 1``
        (ceil with ceil_mode).
    """

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ):
        super().__init__("AvgPool2d", kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = check.boolean(count_include_pad, "count_include_pad", "AvgPool2d")
        if divisor_override is not None:
            divisor_override = check.integer(divisor_override, "divisor_override", "AvgPool2d")
            if divisor_override == 0:
                raise ValueError("AvgPool2d: divisor_override must not be zero")
        self.divisor_override = divisor_override

    def _args(self) -> tuple:
        return (
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = F.avg_pool2d(x, *self._args())  # (N, C, oH, oW)
        self.saved = {"input": x}
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return F.avg_pool2d_backward(grad_output, self._take_saved()["input"], *self._args())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
