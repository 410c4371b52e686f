"""CrossEntropyLoss: softmax cross-entropy as a module."""

from __future__ import annotations

import numpy as np

from minicnn import functional as F
from minicnn.functional import _checks as check
from minicnn.nn import tape
from minicnn.nn.layers import _Layer


class CrossEntropyLoss(_Layer):
    """``F.cross_entropy(logits, target)`` as a module; ``backward()`` returns d loss / d logits.

    Args:
        weight: a rescaling weight per class (C,), or None.
        ignore_index: a target value that contributes nothing.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        label_smoothing: e in [0, 1] mixes the one-hot target with the uniform one.

    Shape: logits (N, C), target (N,) class indices → a 0-d array ('none': (N,)).
    """

    def __init__(
        self,
        weight: np.ndarray | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(reduction, str) or reduction not in ("mean", "sum", "none"):
            raise ValueError(
                f"CrossEntropyLoss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
            )
        self.weight = (
            None if weight is None else check.float_array(weight, "weight", "CrossEntropyLoss")
        )
        self.ignore_index = check.integer(ignore_index, "ignore_index", "CrossEntropyLoss")
        self.reduction = reduction
        self.label_smoothing = check.probability(
            label_smoothing, "label_smoothing", "CrossEntropyLoss"
        )

    def _kwargs(self) -> dict:
        return {
            "weight": self.weight,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "label_smoothing": self.label_smoothing,
        }

    def forward(self, input: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The loss; for 'mean' and 'sum' a ``LossValue`` whose ``backward()`` backpropagates
        through the model that produced ``input`` (``cost.backward()`` as in torch)."""
        loss = F.cross_entropy(input, target, **self._kwargs())
        self.saved = {"input": input, "target": target}
        if self.reduction == "none" or not tape.is_grad_enabled():
            return loss
        return tape.LossValue(loss, self, input)

    def backward(self, grad_output=None) -> np.ndarray:
        """d loss / d input; ``grad_output`` defaults to 1 (the loss is the final output)."""
        saved = self._take_saved()
        if grad_output is None:
            if self.reduction == "none":
                raise ValueError(
                    "CrossEntropyLoss.backward: reduction='none' gives one loss per sample; "
                    "pass grad_output of that shape"
                )
            grad_output = np.ones((), dtype=saved["input"].dtype)
        return F.cross_entropy_backward(
            grad_output, saved["input"], saved["target"], **self._kwargs()
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"
