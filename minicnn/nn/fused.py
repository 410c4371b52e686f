"""Conv2d → ReLU → MaxPool2d run as one layer when the fast kernels are active.

The deck's models are built of ``Sequential(Conv2d, ReLU, MaxPool2d)`` blocks. With the
``numba`` backend, ``Sequential`` runs each such run of three children as one
``ConvReLUMaxPool2d`` call (``minicnn.kernels.fused`` says why that is faster and why its
results are the three layers' bit for bit). The children stay the model's layers: their
parameters, ``state_dict`` keys and repr do not change, and the fused layer adds its
gradients into the conv's parameters. What changes is only that the three children are not
called one by one, so to watch a single layer's forward (a debugger, a timer around
``Conv2d.forward``) turn fusion off:

    with minicnn.nn.fusion(False):
        out = model(x)

The ``numpy`` backend (the readable twins) never fuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from minicnn import functional as F
from minicnn import kernels
from minicnn.nn import tape
from minicnn.nn.activation import ReLU
from minicnn.nn.layers import Conv2d, _as, _Layer, promote
from minicnn.nn.module import Module
from minicnn.nn.pooling import MaxPool2d

_enabled = True


@contextlib.contextmanager
def fusion(enabled: bool) -> Iterator[None]:
    """Turn the fusion of Conv2d → ReLU → MaxPool2d on or off for a block."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


class ConvReLUMaxPool2d(_Layer):
    """``pool(relu(conv(x)))`` in one pass, for a conv and a pool that live elsewhere (in a
    Sequential): not registered as their parent, so parameters and state_dict stay theirs."""

    def __init__(self, conv: Conv2d, relu: ReLU, pool: MaxPool2d) -> None:
        super().__init__()
        object.__setattr__(self, "conv", conv)
        object.__setattr__(self, "relu", relu)
        object.__setattr__(self, "pool", pool)

    def forward(self, x: np.ndarray) -> np.ndarray:
        conv = self.conv
        bias = None if conv.bias is None else conv.bias.data
        xc, weight, bias = promote(x, conv.weight.data, bias)
        try:
            out, indices = F.conv2d_relu_max_pool2d(
                xc, weight, bias, *conv._args(), *self.pool._args()
            )
        except (ValueError, TypeError):
            # bad input: let the layers run one by one, so the error names the one at fault
            with tape.no_grad():
                self.pool(self.relu(conv(x)))
            raise
        self.saved = {
            "input": xc,
            "weight": weight,
            "bias": bias,
            "dtype": x.dtype,
            "out": out,
            "indices": indices,
        }
        return out  # (N, C_out, oH', oW')

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        saved = self._take_saved()
        conv = self.conv
        mask = (self.needs_input_grad, True, conv.bias is not None)
        grad_output = _as(grad_output, saved["input"].dtype)
        grad_x, grad_w, grad_b = F.conv2d_relu_max_pool2d_backward(
            grad_output,
            saved["input"],
            saved["weight"],
            saved["bias"],
            saved["out"],
            saved["indices"],
            *conv._args(),
            *self.pool._args(),
            output_mask=mask,
        )
        conv.weight.accumulate_grad(grad_w)
        if conv.bias is not None:
            conv.bias.accumulate_grad(grad_b)
        return None if grad_x is None else grad_x.astype(saved["dtype"], copy=False)

    def extra_repr(self) -> str:
        return f"{self.conv!r}, {self.relu!r}, {self.pool!r}"


def fused_children(sequential: Module) -> list[Module]:
    """The modules ``sequential.forward`` calls in order: its children, with each run of
    exactly Conv2d, ReLU, MaxPool2d replaced by one cached ``ConvReLUMaxPool2d`` while fusion
    is on and the backend is numba."""
    children = list(sequential._modules.values())
    if not _enabled or kernels.get_backend() != "numba":
        return children
    cache = sequential.__dict__.setdefault("_fused", {})
    calls, i = [], 0
    while i < len(children):
        three = tuple(type(m) for m in children[i : i + 3])
        if three == (Conv2d, ReLU, MaxPool2d):
            layer = cache.get(i)
            if layer is None or (layer.conv, layer.relu, layer.pool) != tuple(children[i : i + 3]):
                layer = cache[i] = ConvReLUMaxPool2d(*children[i : i + 3])
            calls.append(layer)
            i += 3
        else:
            calls.append(children[i])
            i += 1
    return calls
