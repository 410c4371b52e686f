"""Layers without parameters: ReLU, Flatten and Dropout."""

from __future__ import annotations

import numpy as np

from minicnn import functional as F
from minicnn.functional import _checks as check
from minicnn.nn.layers import _generator, _Layer


class ReLU(_Layer):
    """``max(x, 0)`` elementwise. Shape: any, unchanged."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.saved = {"input": x}
        return F.relu(x)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return F.relu_backward(grad_output, self._take_saved()["input"])


class Flatten(_Layer):
    """Merge dimensions ``start_dim..end_dim`` (default: all but the batch axis).

    Shape: (N, C, H, W) → (N, C*H*W) with the defaults.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = check.integer(start_dim, "start_dim", "Flatten")
        self.end_dim = check.integer(end_dim, "end_dim", "Flatten")

    def forward(self, x: np.ndarray) -> np.ndarray:
        # float32 or float64, as every layer takes, so that its gradient can come back
        x = check.float_array(x, "input", "Flatten")
        out = F.flatten(x, self.start_dim, self.end_dim)
        self.saved = {"shape": x.shape}
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        shape = self._take_saved()["shape"]
        grad = check.float_array(grad_output, "grad_output", "Flatten.backward")
        merged = F.flatten(np.empty(shape, dtype=np.bool_), self.start_dim, self.end_dim).shape
        if grad.shape != merged:
            raise ValueError(
                f"Flatten.backward: expected grad_output of shape {merged} (the forward "
                f"output), got {check.describe(grad)}"
            )
        return grad.reshape(shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(_Layer):
    """Inverted dropout (see ``F.dropout``): in training, zero each entry with probability
    ``p`` and scale the rest by 1/(1 - p); in eval mode, the identity.

    The keep-mask comes from ``generator`` (None: minicnn's default), or from ``mask_source``
    when it is set: a callable ``shape -> boolean mask``, so that a run can replay given masks.
    The mask last used is ``self.mask``. Shape: any, unchanged.
    """

    def __init__(self, p: float = 0.5, generator=None) -> None:
        super().__init__()
        self.p = check.probability(p, "dropout probability", "Dropout")
        self.generator = _generator(generator, "Dropout")
        self.mask_source = None
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:
            out = F.dropout(x, self.p, training=False)
            self.saved = {"mask": None, "shape": x.shape}
            return out
        x = check.float_array(x, "input", "Dropout")
        if self.mask_source is not None:
            mask = self.mask_source(x.shape)
        else:
            mask = F.dropout_mask(x.shape, self.p, self.generator)
        out = F.dropout(x, self.p, training=True, mask=mask)
        self.mask = mask
        self.saved = {"mask": mask}
        return out

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._take_saved()
        if saved["mask"] is None:  # eval mode: the identity, for a gradient of the right shape
            grad = check.float_array(grad_output, "grad_output", "Dropout.backward")
            if grad.shape != saved["shape"]:
                raise ValueError(
                    f"Dropout.backward: expected grad_output of shape {saved['shape']} (the "
                    f"forward output), got {check.describe(grad)}"
                )
            return grad
        return F.dropout_backward(grad_output, saved["mask"], self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"
