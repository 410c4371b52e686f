"""The layers with parameters, Conv2d and Linear, and what every layer is built on.

Each layer validates its hyperparameters when it is built, calls ``minicnn.functional`` in
``forward``, keeps in ``self.saved`` what its backward needs, and in ``backward`` adds its
parameters' gradients into ``.grad`` and returns the gradient with respect to its input.
The other layers: ``minicnn.nn.pooling`` (MaxPool2d, AvgPool2d) and ``minicnn.nn.activation``
(ReLU, Flatten, Dropout).
"""

from __future__ import annotations

import math

import numpy as np

from minicnn import functional as F
from minicnn import init
from minicnn.functional import _checks as check
from minicnn.nn.module import FLOAT_DTYPES, Module, Parameter


def _dtype(dtype, layer: str) -> np.dtype:
    """float32 or float64 (None: float32, the default, as torch's ``dtype=None``)."""
    try:
        dtype = np.dtype(np.float32 if dtype is None else dtype)
    except TypeError:
        raise TypeError(f"{layer}: dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _generator(generator, layer: str):
    """A NumPy Generator or None (minicnn's default one), checked before it is needed."""
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"{layer}: generator must be a numpy.random.Generator or None, got "
            f"{type(generator).__name__}"
        )
    return generator


def _positive_int(value, name: str, layer: str) -> int:
    value = check.integer(value, name, layer)
    if value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value}")
    return value


def promote(x, *params: np.ndarray | None):
    """(x, *params) cast to their common dtype, the wider of float32 and float64.

    A module computes in the wider of its input's and its parameters' dtypes, so float64 is
    never rounded to float32 on the way (``F`` functions, like torch's, insist on one dtype).
    """
    if not isinstance(x, np.ndarray) or x.dtype not in FLOAT_DTYPES:
        return (x, *params)  # F reports the bad input
    dtype = np.result_type(x, *(p for p in params if p is not None))
    return tuple(None if a is None else a.astype(dtype, copy=False) for a in (x, *params))


def _as(grad: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A float gradient in the dtype the forward pass computed in (others are F's to report)."""
    if isinstance(grad, np.ndarray) and grad.dtype in FLOAT_DTYPES:
        return grad.astype(dtype, copy=False)
    return grad


class _Layer(Module):
    """A layer that keeps its forward pass's arrays in ``saved`` until its backward pass.

    ``needs_input_grad`` is True except while ``cost.backward()`` runs the backward pass of a
    layer whose input is the model's input (see ``minicnn.nn.tape.backward_call``): the
    layers with parameters then skip the input's gradient and return None.
    """

    def __init__(self) -> None:
        super().__init__()
        self.saved: dict | None = None
        self.needs_input_grad = True

    def _take_saved(self) -> dict:
        if self.saved is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called without a forward pass before it "
                f"(or twice for one forward pass)"
            )
        saved, self.saved = self.saved, None  # free the arrays, as torch frees its graph
        return saved


class Conv2d(_Layer):
    """2-D convolution layer: ``out = conv2d(x, weight, bias)`` (see ``F.conv2d``).

    Weights are (out_channels, in_channels / groups, kH, kW), initialised as torch does:
    kaiming-uniform with a = sqrt(5), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Shape:
        input (N, C_in, H, W) → output (N, C_out, oH, oW),
        ``oH = floor((H + 2*pH - dH*(kH - 1) - 1) / sH) + 1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        dtype=np.float32,
        generator=None,
    ):
        super().__init__()
        name = "Conv2d"
        self.in_channels = _positive_int(in_channels, "in_channels", name)
        self.out_channels = _positive_int(out_channels, "out_channels", name)
        self.groups = _positive_int(groups, "groups", name)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"both be divisible by groups ({groups})"
            )
        self.kernel_size = check.positive_pair(kernel_size, "kernel_size", name)
        self.stride = check.positive_pair(stride, "stride", name)
        self.dilation = check.positive_pair(dilation, "dilation", name)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{name}: padding must be 'same', 'valid', an int or a pair, got {padding!r}"
                )
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(
                    f"{name}: padding='same' is not supported for strided convolutions"
                )
            self.padding = padding
        else:
            self.padding = check.non_negative_pair(padding, "padding", name)
        dtype = _dtype(dtype, name)
        bias = check.boolean(bias, "bias", name)
        generator = _generator(generator, name)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        check.allocatable(shape, dtype, name, "weight")
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        self.bias = Parameter(np.empty(out_channels, dtype=dtype)) if bias else None
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound, generator=generator)

    def _args(self) -> tuple:
        return self.stride, self.padding, self.dilation, self.groups

    def forward(self, x: np.ndarray) -> np.ndarray:
        bias = None if self.bias is None else self.bias.data
        xc, weight, bias = promote(x, self.weight.data, bias)
        out = F.conv2d(xc, weight, bias, *self._args())  # (N, C_out, oH, oW)
        self.saved = {"input": xc, "weight": weight, "dtype": x.dtype}
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._take_saved()
        mask = (self.needs_input_grad, True, self.bias is not None)
        grad_output = _as(grad_output, saved["input"].dtype)
        grad_x, grad_w, grad_b = F.conv2d_backward(
            grad_output, saved["input"], saved["weight"], *self._args(), output_mask=mask
        )
        self.weight.accumulate_grad(grad_w)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_b)
        return None if grad_x is None else grad_x.astype(saved["dtype"], copy=False)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
        text += f"stride={self.stride}"
        if self.padding != (0, 0):
            text += (
                f", padding={self.padding!r}"
                if isinstance(self.padding, str)
                else f", padding={self.padding}"
            )
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Linear(_Layer):
    """``out = x @ weight.T + bias`` (see ``F.linear``), weight (out_features, in_features),
    initialised as torch does (kaiming-uniform a = sqrt(5), bias U(±1/sqrt(in_features))).

    Shape: input (*, in_features) → output (*, out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype=np.float32,
        generator=None,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features", "Linear")
        self.out_features = _positive_int(out_features, "out_features", "Linear")
        dtype = _dtype(dtype, "Linear")
        bias = check.boolean(bias, "bias", "Linear")
        generator = _generator(generator, "Linear")
        check.allocatable((out_features, in_features), dtype, "Linear", "weight")
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        self.bias = Parameter(np.empty(out_features, dtype=dtype)) if bias else None
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound, generator=generator)

    def forward(self, x: np.ndarray) -> np.ndarray:
        bias = None if self.bias is None else self.bias.data
        xc, weight, bias = promote(x, self.weight.data, bias)
        out = F.linear(xc, weight, bias)  # (*, out_features)
        self.saved = {"input": xc, "weight": weight, "dtype": x.dtype}
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._take_saved()
        mask = (self.needs_input_grad, True, self.bias is not None)
        grad_output = _as(grad_output, saved["input"].dtype)
        grad_x, grad_w, grad_b = F.linear_backward(
            grad_output, saved["input"], saved["weight"], mask
        )
        self.weight.accumulate_grad(grad_w)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_b)
        return None if grad_x is None else grad_x.astype(saved["dtype"], copy=False)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
