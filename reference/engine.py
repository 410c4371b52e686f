"""The torch engine for ``minicnn train --engine torch``: the deck's own PyTorch code.

The same interface as ``minicnn.train.MinicnnEngine`` (see ``minicnn.train.protocol.Engine``),
and the same data: the uint8 arrays are scaled once with ``minicnn.data.to_float`` and the
whole train and test sets go to the device once; each step indexes them with the batch's rows
of the epoch's order (also on the device), so there are no per-batch host copies.

Checkpoints are ``minicnn.io.checkpoint`` files: weights converted with ``reference.convert``, the
Adam state in minicnn's layout (``step`` a float, buffers as NumPy arrays), and torch's RNG
states as hex strings (``rng_state["torch"]``, and ``["torch_cuda"]`` on a GPU). Such a file
loads into minicnn as it is.

torch is imported here and only here; ``minicnn.train.loop.build_engine`` imports this module,
lazily, only for ``--engine torch``: this module depends on ``minicnn.train.protocol`` and
``minicnn.train.config``, never on the loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from minicnn import optim
from minicnn.data import to_float
from minicnn.io.checkpoint import Checkpoint, save_checkpoint
from minicnn.models import MODELS as MINICNN_MODELS
from minicnn.train.protocol import EVAL_BATCH, Split
from reference.convert import copy_from_torch, to_torch_state_dict
from reference.models import MODELS

if TYPE_CHECKING:
    from minicnn.train.config import TrainConfig

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(requested: str) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without one is an error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device {requested!r}: expected auto, cpu or cuda")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device cuda: torch {torch.__version__} sees no CUDA device "
            "(torch.cuda.is_available() is False); use --device cpu or --device auto"
        )
    return torch.device(requested)


class TorchEngine:
    """The deck's ``CNN``/``DeepCNN``, ``CrossEntropyLoss`` and ``Adam`` in PyTorch.

    ``torch.manual_seed(seed)`` runs right before the model is built (on the CPU, then moved),
    so the initial weights are exactly the deck's for the same seed.
    """

    name = "torch"

    def __init__(self, config: TrainConfig, train: Split, test: Split) -> None:
        self.config = config
        self.torch_device = resolve_device(config.device)
        self.device = self.torch_device.type
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.dtype = DTYPES[config.dtype]
        self.batch_size = config.batch_size
        device = self.torch_device
        images, labels = train
        test_images, test_labels = test
        # whole sets on the device once: (N, 1, 28, 28) in [0, 1], (N,) int64
        self.x = torch.from_numpy(to_float(images, dtype=config.dtype)).to(device)
        self.y = torch.from_numpy(labels).to(device)
        self.test_x = torch.from_numpy(to_float(test_images, dtype=config.dtype)).to(device)
        self.test_raw = torch.from_numpy(test_images).to(device)  # (M, 28, 28) uint8
        self.test_y = torch.from_numpy(test_labels).to(device)
        self.order = torch.arange(len(images), device=device)

        torch.manual_seed(config.seed)
        self.model = MODELS[config.model]().to(device=device, dtype=self.dtype)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.model.train()
        self._twin = None

    def begin_epoch(self, order: np.ndarray) -> None:
        self.order = torch.from_numpy(order).to(self.torch_device)  # (N,)

    def step(self, batch: int) -> float:
        rows = self.order[batch * self.batch_size : (batch + 1) * self.batch_size]  # (B,)
        X = self.x[rows]  # (B, 1, 28, 28)
        Y = self.y[rows]  # (B,)
        self.optimizer.zero_grad()
        hypothesis = self.model(X)  # (B, 10)
        cost = self.criterion(hypothesis, Y)
        cost.backward()
        self.optimizer.step()
        return cost.item()  # one sync per step: the loop checks every loss for NaN

    def finite(self) -> bool:
        with torch.no_grad():
            return all(bool(torch.isfinite(param).all()) for param in self.model.parameters())

    def evaluate(self, raw: bool = False) -> float:
        was_training = self.model.training
        self.model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.torch_device)
        n = len(self.test_y)
        with torch.no_grad():
            for start in range(0, n, EVAL_BATCH):
                rows = slice(start, start + EVAL_BATCH)
                if raw:  # the deck's bug: pixels 0-255, not the 0-1 the model was trained on
                    X = self.test_raw[rows].unsqueeze(1).to(self.dtype)  # (b, 1, 28, 28)
                else:
                    X = self.test_x[rows]  # (b, 1, 28, 28)
                prediction = self.model(X)  # (b, 10)
                correct += (torch.argmax(prediction, 1) == self.test_y[rows]).sum()
        self.model.train(was_training)
        return correct.item() / n

    def save(self, path: Path, *, epoch: int, step: int, config: dict, metrics: list) -> None:
        # a minicnn twin carries the weights and the optimizer state into minicnn's format;
        # its own generator keeps minicnn's default stream untouched
        if self._twin is None:
            self._twin = MINICNN_MODELS[self.config.model](generator=np.random.default_rng(0))
        twin = copy_from_torch(self.model, self._twin)
        twin_optimizer = optim.Adam(twin.parameters(), lr=self.config.lr)
        twin_optimizer.load_state_dict(_numpy_optimizer_state(self.optimizer.state_dict()))
        rng_state = {"torch": _hex(torch.get_rng_state())}
        if self.device == "cuda":
            rng_state["torch_cuda"] = _hex(torch.cuda.get_rng_state(self.torch_device))
        save_checkpoint(
            path,
            twin,
            model_name=self.config.model,
            optimizer=twin_optimizer,
            epoch=epoch,
            step=step,
            config=config,
            rng_state=rng_state,
            metrics=metrics,
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        if checkpoint.optimizer_state is None:
            raise ValueError(f"{checkpoint.path}: holds no optimizer state, so it cannot resume")
        if "torch" not in checkpoint.rng_state:
            raise ValueError(f"{checkpoint.path}: holds no torch RNG state (written by minicnn?)")
        self.model.load_state_dict(to_torch_state_dict(checkpoint.state_dict), strict=True)
        self.optimizer.load_state_dict(_torch_optimizer_state(checkpoint.optimizer_state))
        torch.set_rng_state(_unhex(checkpoint.rng_state["torch"]))
        if self.device == "cuda" and "torch_cuda" in checkpoint.rng_state:
            torch.cuda.set_rng_state(_unhex(checkpoint.rng_state["torch_cuda"]), self.torch_device)


def _numpy_optimizer_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """torch's optimizer ``state_dict()`` with NumPy buffers and a float ``step`` (minicnn's)."""
    state = {
        index: {
            key: float(value) if key == "step" else value.detach().cpu().numpy().copy()
            for key, value in buffers.items()
        }
        for index, buffers in state_dict["state"].items()
    }
    return {"state": state, "param_groups": [dict(g) for g in state_dict["param_groups"]]}


def _torch_optimizer_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """minicnn's optimizer state as torch's: tensors, and ``step`` a 0-d float32 tensor."""
    state = {
        index: {
            key: torch.tensor(float(value), dtype=torch.float32)
            if key == "step"
            else torch.from_numpy(np.array(value))
            for key, value in buffers.items()
        }
        for index, buffers in state_dict["state"].items()
    }
    return {"state": state, "param_groups": [dict(g) for g in state_dict["param_groups"]]}


def _hex(state: torch.Tensor) -> str:
    return state.cpu().numpy().tobytes().hex()


def _unhex(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(bytes.fromhex(text), dtype=np.uint8).copy())
