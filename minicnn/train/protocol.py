"""The engine interface: what the training loop (``minicnn.train.loop``) asks of an engine.

An engine owns the model, the loss and the optimizer, and the data in whatever form it trains
on. The training loop is engine-neutral: it decides the batch order (one NumPy permutation per
epoch), counts steps, averages the cost, logs and checkpoints; the engine only runs steps,
evaluates, and saves or restores its state. ``minicnn.train.minicnn_engine.MinicnnEngine`` is
minicnn's; ``reference.engine.TorchEngine`` is the same interface in PyTorch (the GPU path).

Both engines receive the same uint8 arrays and the same per-epoch order, so on the CPU they see
the very same batches: ``x = to_float(images[rows])``, ToTensor's scaling to [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from minicnn.io.checkpoint import Checkpoint
from minicnn.train.config import TrainConfig

EVAL_BATCH = 1000  # test images per forward pass when evaluating
Split = tuple[np.ndarray, np.ndarray]  # uint8 images (N, 28, 28), int64 labels (N,)


class Engine(Protocol):
    """The training loop's view of an engine.

    Attributes:
        name: ``"minicnn"`` or ``"torch"``.
        device: where it computes (``"cpu"`` or ``"cuda"``).
        model: the model being trained (tests poke at it through the ``on_batch`` hook).
    """

    name: str
    device: str
    model: Any

    def __init__(self, config: TrainConfig, train: Split, test: Split) -> None:
        """Seed, then build the model, loss and optimizer for ``config``; keep the data."""

    def begin_epoch(self, order: np.ndarray) -> None:
        """Take this epoch's sample order, ``(N,)`` indices into the training images."""

    def step(self, batch: int) -> float:
        """One optimizer step on batch ``batch`` of the order; returns the batch's mean loss."""

    def finite(self) -> bool:
        """Whether every weight is finite; a step whose loss was finite can still overflow them."""

    def evaluate(self, raw: bool = False) -> float:
        """Test accuracy in eval mode without gradients; ``raw``: pixels 0-255, unscaled."""

    def save(self, path: Path, *, epoch: int, step: int, config: dict, metrics: list) -> None:
        """Write a resumable ``minicnn.io.checkpoint`` (weights, optimizer, RNG states)."""

    def restore(self, checkpoint: Checkpoint) -> None:
        """Load weights, optimizer state and RNG states from a checkpoint written by ``save``."""
