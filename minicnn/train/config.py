"""What defines a training run: ``TrainConfig``, whose fields are ``minicnn train``'s options
(``batch_size`` → ``--batch-size``), and the command line that reproduces one."""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from minicnn.data import DATA_DIR_HELP
from minicnn.models import MODELS

EPOCH_LINE = "[Epoch: {:>4}] cost = {:>.9}"  # the deck's print, character for character
ENGINES, FLOATS = ("minicnn", "torch"), ("float32", "float64")
# what a resumed run must share with its checkpoint: these decide the trajectory
TRAJECTORY_FIELDS = ("model", "engine", "seed", "batch_size", "lr", "dtype", "train_limit")


def _opt(default: Any, text: str, choices: tuple | None = None, metavar: str | None = None):
    """A config field with its command-line help, choices and metavar (``minicnn.cli`` picks
    N for ints and PATH for strings when none is given)."""
    meta = {"help": text, "choices": choices, "metavar": metavar}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults are the deck's. ``minicnn train``'s
    options are built from these fields (``batch_size`` → ``--batch-size``)."""

    model: str = _opt("cnn", "the deck's CNN, or deep: DeepCNN with dropout", tuple(MODELS))
    engine: str = _opt("minicnn", "minicnn (NumPy/Numba, CPU) or torch (CPU or CUDA)", ENGINES)
    device: str = _opt(
        "auto",
        "auto: CUDA if torch sees a GPU, else cpu (minicnn: cpu only)",
        ("auto", "cpu", "cuda"),
    )
    epochs: int = _opt(15, "epochs in all, counting those of a --resume checkpoint")
    batch_size: int = _opt(100, "images per batch (shuffled, the last partial batch dropped)")
    lr: float = _opt(0.001, "Adam's learning rate", metavar="LR")
    seed: int = _opt(777, "seeds the initial weights, the dropout and each epoch's shuffle")
    data_dir: str | None = _opt(None, DATA_DIR_HELP, metavar="DIR")
    download: bool = _opt(True, "download MNIST when it is not found (the deck's download=True)")
    save: str | None = _opt(None, "write a resumable checkpoint (.safetensors) every epoch")
    resume: str | None = _opt(
        None,
        "continue this checkpoint's run (same model, engine, seed, "
        "batch size, lr, dtype and train limit)",
    )
    metrics: str | None = _opt(
        None,
        "JSON-lines log, one object per epoch (default: NAME.metrics"
        ".jsonl beside --save NAME.safetensors, else runs/MODEL-ENGINE"
        ".jsonl)",
    )
    plot: str | None = _opt(None, "write a PNG of the cost per epoch and the test accuracy")
    overwrite: bool = _opt(
        False, "replace an earlier run's --save checkpoint, --metrics log or --plot"
    )
    threads: int | None = _opt(None, "CPU threads for the kernels and torch (default: all cores)")
    dtype: str = _opt("float32", "weights and inputs in float32 or float64", FLOATS)
    train_limit: int | None = _opt(None, "train on the first N images only (for smoke tests)")
    test_limit: int | None = _opt(None, "evaluate on the first N test images only")
    deck_eval: bool = _opt(False, "also run the deck's buggy evaluation on raw 0-255 pixels")
    progress: str = _opt(
        "auto", "auto: a progress bar when stderr is a terminal; bar; none", ("auto", "bar", "none")
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value, choices = getattr(self, field.name), field.metadata["choices"]
            if choices is not None and value not in choices:
                flag = option_flag(field.name)
                raise ValueError(f"--{flag} {value!r}: expected one of {choices}")
        lows = {
            "epochs": 0,
            "batch_size": 1,
            "seed": 0,
            "threads": 1,
            "train_limit": 1,
            "test_limit": 1,
        }
        for name, low in lows.items():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < low):
                raise ValueError(f"--{option_flag(name)} {value!r}: expected an integer >= {low}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr {self.lr!r}: expected a positive number")
        largest = _LARGEST[self.dtype]
        if self.lr > largest:
            # the optimizer would compute in inf from its first step
            raise ValueError(f"--lr {self.lr!r}: expected at most {largest:g} ({self.dtype})")
        if self.engine == "minicnn" and self.device == "cuda":
            raise ValueError(
                "--device cuda: the minicnn engine runs on the CPU only (use "
                "--device cpu, or --engine torch for CUDA)"
            )


_LARGEST = {"float32": 3.4028234663852886e38, "float64": sys.float_info.max}


def metrics_path(config: TrainConfig) -> Path:
    """Where the JSON-lines metrics go (see ``minicnn.train.loop``'s docstring)."""
    if config.metrics:
        return Path(config.metrics)
    if config.save:
        save = Path(config.save)
        return save.with_name(save.name.removesuffix(".safetensors") + ".metrics.jsonl")
    return Path("runs") / f"{config.model}-{config.engine}.jsonl"


def train_command(config: TrainConfig, resume: str | os.PathLike | None = None) -> str:
    """The ``minicnn train`` command line that reproduces ``config`` (non-defaults only), with
    ``--resume`` replaced by ``resume`` when given."""
    words = ["minicnn", "train"]
    for field in dataclasses.fields(TrainConfig):
        value, flag = getattr(config, field.name), option_flag(field.name)
        if (field.name == "resume" and resume is not None) or value == field.default:
            continue
        if isinstance(value, bool):
            words.append(f"--{'' if value else 'no-'}{flag}")
        else:
            words += [f"--{flag}", str(value)]
    if resume is not None:
        words += ["--resume", os.fspath(resume)]
    return shlex.join(words)


def option_flag(name: str) -> str:
    """A field's option without its dashes: ``batch_size`` → ``batch-size``."""
    return name.replace("_", "-")
