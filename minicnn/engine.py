"""What ``minicnn.train`` is assembled from: the engine interface and minicnn's own engine,
evaluation, and the run's surroundings (progress bar, Ctrl-C handling, the plot).

An engine owns the model, the loss and the optimizer, and the data in whatever form it trains
on. The training loop in ``minicnn.train`` is engine-neutral: it decides the batch order (one
NumPy permutation per epoch), counts steps, averages the cost, logs and checkpoints; the engine
only runs steps, evaluates, and saves or restores its state. ``reference.engine.TorchEngine``
is the same interface in PyTorch (the GPU path).

Both engines receive the same uint8 arrays and the same per-epoch order, so on the CPU they see
the very same batches: ``x = to_float(images[rows])``, ToTensor's scaling to [0, 1].
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

import minicnn
from minicnn import nn, optim
from minicnn.checkpoint import Checkpoint, restore_rng_state, save_checkpoint
from minicnn.data import to_float
from minicnn.models import MODELS

if TYPE_CHECKING:
    from minicnn.train import TrainConfig

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

    def evaluate(self, raw: bool = False) -> float:
        """Test accuracy in eval mode without gradients; ``raw``: pixels 0-255, unscaled."""

    def save(self, path: Path, *, epoch: int, step: int, config: dict, metrics: list) -> None:
        """Write a resumable ``minicnn.checkpoint`` (weights, optimizer, RNG states)."""

    def restore(self, checkpoint: Checkpoint) -> None:
        """Load weights, optimizer state and RNG states from a checkpoint written by ``save``."""


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

        minicnn.manual_seed(config.seed)
        self.model = MODELS[config.model](dtype=self.dtype)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = optim.Adam(self.model.parameters(), lr=config.lr)
        self.model.train()

    def begin_epoch(self, order: np.ndarray) -> None:
        self.order = order  # (N,)

    def step(self, batch: int) -> float:
        rows = self.order[batch * self.batch_size : (batch + 1) * self.batch_size]  # (B,)
        X = to_float(self.images[rows], dtype=self.dtype)  # (B, 1, 28, 28) in [0, 1]
        Y = self.labels[rows]  # (B,)
        self.optimizer.zero_grad()
        hypothesis = self.model(X)  # (B, 10)
        cost = self.criterion(hypothesis, Y)
        cost.backward()
        self.optimizer.step()
        return float(cost)

    def evaluate(self, raw: bool = False) -> float:
        return accuracy(self.model, self.test_images, self.test_labels, raw=raw)

    def save(self, path: Path, *, epoch: int, step: int, config: dict, metrics: list) -> None:
        save_checkpoint(
            path, self.model, model_name=self.model_name, optimizer=self.optimizer,
            epoch=epoch, step=step, config=config, metrics=metrics,
        )  # fmt: skip

    def restore(self, checkpoint: Checkpoint) -> None:
        if checkpoint.optimizer_state is None:
            raise ValueError(f"{checkpoint.path}: holds no optimizer state, so it cannot resume")
        self.model.load_state_dict(checkpoint.state_dict)
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        restore_rng_state(checkpoint.rng_state)


def build_engine(config: TrainConfig, train_set: Split, test_set: Split) -> Engine:
    """The engine ``config.engine`` names, seeded and built; torch is imported only here."""
    if config.engine == "minicnn":
        return MinicnnEngine(config, train_set, test_set)
    try:
        from reference.engine import TorchEngine  # imports torch: only for --engine torch
    except ImportError as error:
        raise ValueError(f"--engine torch needs PyTorch ({error}); pip install torch") from None
    return TorchEngine(config, train_set, test_set)


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
        with minicnn.no_grad():
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


# -- the run's surroundings -----------------------------------------------------------------


class ProgressBar:
    """A tqdm bar over one epoch's batches on stderr (``leave=False``), or nothing at all."""

    def __init__(self, bar=None) -> None:
        self.bar = bar

    def update(self, cost: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(cost=f"{cost:.4f}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_bar(mode: str, total: int, initial: int, desc: str) -> ProgressBar:
    """``mode`` ``"bar"``: a tqdm bar; ``"none"``: nothing; ``"auto"``: a bar when stderr is a
    terminal and tqdm is installed, so logs and pipes get plain lines only."""
    if mode == "none" or (mode == "auto" and not sys.stderr.isatty()):
        return ProgressBar()
    try:
        from tqdm import tqdm
    except ImportError:
        if mode == "bar":
            raise ValueError("--progress bar needs tqdm: pip install tqdm") from None
        return ProgressBar()
    return ProgressBar(tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False,
                            file=sys.stderr, dynamic_ncols=True))  # fmt: skip


class StopOnSigint:
    """While active, the first Ctrl-C (SIGINT) only sets ``requested``, so the loop can stop at
    a batch boundary and save; a second one raises ``KeyboardInterrupt`` at once.

    Signal handlers can only be set in the main thread; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous = None

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing the current batch, then saving a checkpoint "
              "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)  # fmt: skip

    def __exit__(self, *exc_info) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._installed = False


def save_plot(
    path: str | Path, records: list[dict], accuracy: float, deck_accuracy: float | None = None
) -> Path:
    """A PNG: the average cost per epoch (left) and the test accuracy (right, with the deck's
    raw-pixel evaluation beside it when given). matplotlib is imported here, and only its Agg
    canvas is used, so no window opens and pyplot's global backend is left alone."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install matplotlib") from None
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    cost_axes, accuracy_axes = figure.subplots(1, 2)
    cost_axes.plot([r["epoch"] for r in records], [r["cost"] for r in records], marker="o")
    cost_axes.set(title="Training cost", xlabel="epoch", ylabel="average cross-entropy")
    cost_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    names, values = ["test (0-1 inputs)"], [accuracy]
    if deck_accuracy is not None:
        names, values = [*names, "deck's eval (0-255)"], [*values, deck_accuracy]
    bars = accuracy_axes.bar(names, values, color=["tab:blue", "tab:orange"][: len(values)])
    accuracy_axes.bar_label(bars, fmt="%.4f")
    accuracy_axes.set(title="Test accuracy", xlabel="evaluation", ylabel="accuracy", ylim=(0, 1.05))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
