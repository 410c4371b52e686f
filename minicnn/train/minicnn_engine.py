"""minicnn's engine: the deck's model, loss and optimizer in minicnn, and evaluation."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path

import numpy as np

from minicnn import nn, optim
from minicnn.data import to_float
from minicnn.io.checkpoint import Checkpoint, restore_rng_state, save_checkpoint
from minicnn.models import MODELS
from minicnn.nn.tape import no_grad
from minicnn.random import manual_seed
from minicnn.train.config import TrainConfig
from minicnn.train.protocol import EVAL_BATCH, Split


class MinicnnEngine:
    """The deck's model, ``CrossEntropyLoss`` and ``Adam`` in minicnn, on the CPU.

    ``minicnn.manual_seed(seed)`` runs right before the model is built, so the initial
    weights and then DeepCNN's dropout masks come from one seeded stream.
    """

    name = "minicnn"

    def __init__(self, config: TrainConfig, train: Split, test: Split) -> None:
        if config.device not in ("auto", "cpu"):
            raise ValueError(
                f"--device {config.device}: the minicnn engine runs on the CPU only "
                "(use --device cpu, or --engine torch for CUDA)"
            )
        self.device = "cpu"
        self.model_name = config.model
        self.dtype = np.dtype(config.dtype)
        self.batch_size = config.batch_size
        self.images, self.labels = train  # (N, 28, 28) uint8, (N,) int64
        self.test_images, self.test_labels = test  # (M, 28, 28) uint8, (M,) int64
        self.order = np.arange(len(self.images))  # (N,)

        manual_seed(config.seed)
        self.model = MODELS[config.model](dtype=self.dtype)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = optim.Adam(self.model.parameters(), lr=config.lr)
        self.model.train()
        self.first_step = True

    def begin_epoch(self, order: np.ndarray) -> None:
        self.order = order  # (N,)

    def step(self, batch: int) -> float:
        if self.first_step:
            self.first_step = False
            with compile_notice():
                return self.step(batch)
        rows = self.order[batch * self.batch_size : (batch + 1) * self.batch_size]  # (B,)
        X = to_float(self.images[rows], dtype=self.dtype)  # (B, 1, 28, 28) in [0, 1]
        Y = self.labels[rows]  # (B,)
        self.optimizer.zero_grad()
        hypothesis = self.model(X)  # (B, 10)
        cost = self.criterion(hypothesis, Y)
        cost.backward()
        self.optimizer.step()
        return float(cost)

    def finite(self) -> bool:
        return all(np.isfinite(param.data).all() for param in self.model.parameters())

    def evaluate(self, raw: bool = False) -> float:
        return accuracy(self.model, self.test_images, self.test_labels, raw=raw)

    def save(self, path: Path, *, epoch: int, step: int, config: dict, metrics: list) -> None:
        save_checkpoint(
            path,
            self.model,
            model_name=self.model_name,
            optimizer=self.optimizer,
            epoch=epoch,
            step=step,
            config=config,
            metrics=metrics,
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        if checkpoint.optimizer_state is None:
            raise ValueError(f"{checkpoint.path}: holds no optimizer state, so it cannot resume")
        self.model.load_state_dict(checkpoint.state_dict)
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        restore_rng_state(checkpoint.rng_state)


COMPILE_NOTICE_AFTER = 2.0  # seconds: a warm step takes milliseconds, a cold one ~30 s


@contextlib.contextmanager
def compile_notice(after: float = COMPILE_NOTICE_AFTER):
    """While the block runs, say on stderr once it has taken ``after`` seconds: on the first run
    Numba compiles the kernels the block calls (then caches them), and the screen would
    otherwise stay silent for half a minute."""
    timer = threading.Timer(
        after,
        lambda: print(
            "(compiling minicnn's kernels on first use; Numba caches them, so later runs "
            "start at once)",
            file=sys.stderr,
            flush=True,
        ),
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def accuracy(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    raw: bool = False,
    batch_size: int = EVAL_BATCH,
) -> float:
    """The fraction of ``images`` whose arg-max logit is the label, in eval mode, no_grad.

    ``raw=True`` feeds the pixels as 0-255 floats, which is what the deck's evaluation does by
    mistake (``test_data.float()`` without the ``/ 255`` that ToTensor applied in training).
    The model's training mode is restored afterwards.

    Shape: images ``(N, 28, 28)`` uint8, labels ``(N,)``.
    """
    dtype = next(model.parameters()).data.dtype
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with no_grad():
            for start in range(0, len(images), batch_size):
                rows = slice(start, start + batch_size)
                if raw:
                    X = images[rows, None].astype(dtype)  # (b, 1, 28, 28) in [0, 255]
                else:
                    X = to_float(images[rows], dtype=dtype)  # (b, 1, 28, 28) in [0, 1]
                prediction = model(X)  # (b, 10)
                correct += int(np.sum(prediction.argmax(1) == labels[rows]))
    finally:
        model.train(was_training)
    return correct / len(images)
