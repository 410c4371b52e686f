"""The engines a benchmark compares, behind one small interface, and the data they run on.

An engine is one way of running the deck's models:

    minicnn-numpy   minicnn on its readable NumPy twins (``use_backend("numpy")``)
    minicnn-numba   minicnn on its fast kernels (the default backend)
    torch-cpu       ``reference.models`` in PyTorch on the CPU
    torch-cuda      the same on a GPU, the data resident in GPU memory

A ``Runner`` holds one engine's model, loss and Adam optimizer for one batch size, and a few
batches already in the engine's memory (NumPy arrays, CPU tensors or CUDA tensors), so a
timing measures the step and nothing around it. ``run(mode, steps)`` runs ``steps``
training steps (zero_grad, forward, loss, backward, Adam step) or inference passes (eval
mode, no grad) and returns the seconds they took, synchronising with the GPU on both sides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import numpy as np

ENGINES = ("minicnn-numpy", "minicnn-numba", "torch-cpu", "torch-cuda")
MODES = ("train", "infer")
MODEL_NAMES = {"cnn": "CNN", "deep": "DeepCNN"}
SEED = 777  # the deck's seed: both engines start from the same weights
LR = 0.001  # the deck's Adam learning rate
BATCHES_HELD = 4  # distinct batches each runner cycles through


@dataclasses.dataclass
class Data:
    """Images scaled to [0, 1] as float32 and their labels; ``source`` says where they came
    from ("MNIST training images, DIR" or "random data of MNIST's shape")."""

    images: np.ndarray  # (M, 1, 28, 28) float32
    labels: np.ndarray  # (M,) int64
    source: str


def load_data(data_dir: str | None, count: int, seed: int = 0) -> Data:
    """The first ``count`` MNIST training images when ``data_dir`` (or ``$MINICNN_DATA``)
    holds MNIST, else ``count`` random images of MNIST's shape (the speed is the same)."""
    from minicnn.data import find_mnist, load_mnist, to_float

    directory = data_dir or os.environ.get("MINICNN_DATA")
    if directory:
        found = find_mnist(directory)  # FileNotFoundError names what is missing
        images, labels = load_mnist(found, train=True)
        images, labels = images[:count], labels[:count]
        if len(images) < count:  # more than MNIST holds: repeat it
            repeats = -(-count // len(images))
            images, labels = np.tile(images, (repeats, 1, 1)), np.tile(labels, repeats)
        images, labels = images[:count], labels[:count]  # (M, 28, 28), (M,)
        return Data(
            to_float(images), labels.astype(np.int64), f"MNIST training images from {found}"
        )
    rng = np.random.default_rng(seed)
    images = rng.random((count, 1, 28, 28), dtype=np.float32)  # (M, 1, 28, 28) in [0, 1)
    labels = rng.integers(0, 10, size=count, dtype=np.int64)  # (M,)
    return Data(images, labels, "random data of MNIST's shape (no --data-dir or $MINICNN_DATA)")


def available(engine: str) -> tuple[bool, str]:
    """Whether ``engine`` can run here, and why not when it cannot."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    if engine == "torch-cuda":
        import torch

        if not torch.cuda.is_available():
            return False, f"not measured: torch {torch.__version__} sees no CUDA device"
    return True, ""


def make_runner(engine: str, model: str, batch: int, data: Data, state: dict | None = None):
    """A ``MinicnnRunner`` or ``TorchRunner`` for ``engine``; ``state`` is a minicnn
    ``state_dict`` both start from (default: the seeded initial weights)."""
    if engine.startswith("minicnn"):
        return MinicnnRunner(engine, model, batch, data, state)
    return TorchRunner(engine, model, batch, data, state)


def _batches(data: Data, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``BATCHES_HELD`` consecutive batches, as views of ``data``."""
    count = max(1, min(BATCHES_HELD, len(data.images) // batch))
    if len(data.images) < batch:
        raise ValueError(
            f"a batch of {batch} needs at least {batch} images, got {len(data.images)}"
        )
    return [
        (data.images[i * batch : (i + 1) * batch], data.labels[i * batch : (i + 1) * batch])
        for i in range(count)
    ]


class _Runner:
    """What the runners share: the held batches in turn, the deck's training step, an
    inference pass, and ``run``'s timed loop. Each runner sets ``model``, ``criterion``,
    ``optimizer``, ``batches`` and ``position``, and says in ``_context`` what a mode runs
    under."""

    def _next(self):
        self.position = (self.position + 1) % len(self.batches)
        return self.batches[self.position]

    def sync(self) -> None:
        """Wait for the device's queued work (a GPU's); on the CPU there is none."""

    def train_step(self) -> None:
        X, Y = self._next()
        self.optimizer.zero_grad()
        cost = self.criterion(self.model(X), Y)  # (B, 10) logits → 0-d loss
        cost.backward()
        self.optimizer.step()

    def infer(self) -> None:
        X, _ = self._next()
        self.model(X)  # (B, 10)

    def _context(self, mode: str) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def run(self, mode: str, steps: int) -> float:
        step = self.train_step if mode == "train" else self.infer
        with self._context(mode):
            self.model.train(mode == "train")
            self.sync()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            self.sync()
            return time.perf_counter() - start


class MinicnnRunner(_Runner):
    """minicnn's model, ``CrossEntropyLoss`` and ``Adam``, on the backend the engine names."""

    def __init__(self, engine: str, model: str, batch: int, data: Data, state=None) -> None:
        import minicnn
        from minicnn import nn, optim
        from minicnn.models import MODELS

        self.engine, self.model_name, self.batch = engine, model, batch
        self.backend = "numpy" if engine == "minicnn-numpy" else "numba"
        minicnn.manual_seed(SEED)
        self.model = MODELS[model]()
        if state is not None:
            self.model.load_state_dict(state)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = optim.Adam(self.model.parameters(), lr=LR)
        self.batches = _batches(data, batch)  # [(X (B, 1, 28, 28), Y (B,)), ...]
        self.position = 0

    def _context(self, mode: str) -> contextlib.AbstractContextManager:
        """The engine's backend, and no gradients for inference."""
        import minicnn

        stack = contextlib.ExitStack()
        stack.enter_context(minicnn.use_backend(self.backend))
        if mode != "train":
            stack.enter_context(minicnn.no_grad())
        return stack


class TorchRunner(_Runner):
    """``reference.models`` with ``torch.nn.CrossEntropyLoss`` and ``torch.optim.Adam``."""

    def __init__(self, engine: str, model: str, batch: int, data: Data, state=None) -> None:
        import torch

        from reference.convert import to_torch_state_dict
        from reference.models import MODELS

        self.engine, self.model_name, self.batch = engine, model, batch
        self.device = torch.device("cuda" if engine == "torch-cuda" else "cpu")
        torch.manual_seed(SEED)
        self.model = MODELS[model]()
        if state is not None:
            self.model.load_state_dict(to_torch_state_dict(state, like=self.model))
        self.model.to(self.device)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.batches = [
            (torch.from_numpy(X).to(self.device), torch.from_numpy(Y).to(self.device))
            for X, Y in _batches(data, batch)
        ]
        self.position = 0
        self._torch = torch

    def sync(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize()

    def _context(self, mode: str) -> contextlib.AbstractContextManager:
        """No gradients for inference."""
        return contextlib.nullcontext() if mode == "train" else self._torch.no_grad()
