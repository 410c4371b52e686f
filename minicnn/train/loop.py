"""Train the deck's CNN (or DeepCNN) on MNIST with minicnn or with torch, then evaluate it.

The deck's PyTorch script, as one function: ``torch.manual_seed(777)``; MNIST through
``ToTensor`` in shuffled batches of 100 (``drop_last=True``); ``CrossEntropyLoss``;
``Adam(lr=0.001)``; 15 epochs, each printing ``[Epoch:    1] cost = 0.194086716``; then the
test accuracy. Read top to bottom: the config dataclass (``minicnn.train.config``; the CLI
builds its options from it) → ``train``: seed → data → model and optimizer (inside the engine,
see ``minicnn.train.protocol``) → the loop, one line per epoch.

Checkpoints and resuming (``--save PATH``, ``--resume PATH``):

* A checkpoint is written at the end of every epoch: weights, Adam state, RNG states, this
  config, the step count, and the metrics so far. Each epoch's batch order is a pure function
  of ``(seed, epoch)``, so the data loader has no state to save.
* Ctrl-C finishes the current batch, saves a checkpoint that also records the position inside
  the epoch (the last metrics entry is ``{"epoch", "batch", "cost_sum", "seconds",
  "partial": true}``), prints the command that resumes, and raises ``TrainingInterrupted``
  (the CLI exits with code 130).
* ``--resume`` restores all of that and continues, so 2 epochs in one go and 1 epoch + resume +
  1 epoch give bit-identical weights, optimizer state and costs. The options that decide the
  trajectory (``TRAJECTORY_FIELDS``) must match the checkpoint's; ``--epochs`` counts the total.
* A NaN or infinite loss raises ``TrainingDiverged`` before anything is saved, so the last
  good checkpoint stays as it was. The loss is computed before the optimizer's step, so the
  weights themselves are checked after the last step before each save (and before the final
  evaluation): a step that overflows them diverges the run as well.

Metrics go to ``--metrics`` as JSON lines, one object per epoch (``epoch``, ``cost``,
``seconds``, ``images_per_s``) and a last one with ``accuracy``; by default to
``NAME.metrics.jsonl`` beside ``--save NAME.safetensors``, else ``runs/MODEL-ENGINE.jsonl``
(numbered when it exists). A resumed run rewrites the file from the checkpoint's history
first. No earlier run's checkpoint, log or plot is replaced unless asked (``--overwrite``),
and the run ends by printing every file it wrote (``minicnn.train.outputs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from minicnn.data import BatchLoader, find_mnist, load_mnist, resolve_data_dir
from minicnn.data.download import ensure_mnist
from minicnn.io.checkpoint import Checkpoint, load_checkpoint
from minicnn.kernels.runtime.threads import set_num_threads
from minicnn.train.config import (
    EPOCH_LINE,
    TRAJECTORY_FIELDS,
    TrainConfig,
    option_flag,
    train_command,
)
from minicnn.train.console import StopOnSigint, progress_bar, save_plot
from minicnn.train.minicnn_engine import MinicnnEngine
from minicnn.train.outputs import check_outputs, metrics_log, report
from minicnn.train.protocol import Engine, Split

# what every epoch's metrics record holds (besides its number)
_RECORD_FIELDS = ("cost", "seconds", "images_per_s")


@dataclasses.dataclass
class TrainResult:
    """What a run produced: per-epoch history (resumed epochs included), accuracy, paths."""

    costs: list[float]
    seconds: list[float]
    images_per_s: list[float]
    accuracy: float
    deck_accuracy: float | None
    steps: int
    checkpoint: Path | None
    metrics: Path
    plot: Path | None


@dataclasses.dataclass
class BatchInfo:
    """Handed to ``train``'s ``on_batch`` hook after every step (epoch and batch count from 1)."""

    epoch: int
    batch: int
    step: int
    cost: float
    engine: Engine


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving anything more."""


class TrainingInterrupted(Exception):
    """Ctrl-C: a resumable checkpoint was saved at ``path``; ``command`` resumes the run."""

    def __init__(self, path: Path, command: str) -> None:
        super().__init__(f"interrupted; resume with: {command}")
        self.path, self.command = path, command


def train(
    config: TrainConfig, *, on_batch: Callable[[BatchInfo], None] | None = None
) -> TrainResult:
    """Train and evaluate as ``config`` says, printing the deck's lines; returns a TrainResult.

    ``on_batch(info)`` runs after every optimizer step (tests use it to send SIGINT mid-epoch
    or to poison the weights). Options that could only fail later (a missing package, a
    ``--save`` that names a directory) fail now; a second run writing the same metrics log
    (by default, the one beside the same ``--save``) is refused while this one runs, and an
    earlier run's checkpoint, log or plot is not replaced unless asked (``outputs``).
    """
    _check_packages(config)
    check_outputs(config)  # writable paths, and no earlier run's files replaced without a word
    log = metrics_log(config)
    with _sole_writer(log):
        return _train(config, log, on_batch)


def _train(
    config: TrainConfig, log: Path, on_batch: Callable[[BatchInfo], None] | None
) -> TrainResult:
    if config.threads is not None:
        set_num_threads(config.threads)

    # data: the same uint8 arrays and the same batch order for both engines
    directory = _find_data(config)
    train_set = _first(load_mnist(directory, train=True), config.train_limit)
    test_set = _first(load_mnist(directory, train=False), config.test_limit)
    loader = BatchLoader(
        *train_set, config.batch_size, shuffle=True, drop_last=True, seed=config.seed
    )
    n_batches = len(loader)
    if n_batches == 0:
        raise ValueError(
            f"{len(train_set[0])} training images make no batch of {config.batch_size}"
        )

    # seed → model → loss → optimizer, inside the engine
    engine = build_engine(config, train_set, test_set)

    real = np.dtype(config.dtype).type  # the deck sums cost / total_batch in the loss's dtype
    records: list[dict] = []
    start_epoch, start_batch, cost_sum, seconds_before, step = 0, 0, real(0), 0.0, 0
    if config.resume:
        checkpoint = load_checkpoint(config.resume)
        records, partial = _check_resumable(checkpoint, config, n_batches)
        _restore(engine, checkpoint)
        start_epoch, step = checkpoint.epoch, checkpoint.step
        if partial is not None:
            start_batch, cost_sum = partial["batch"], real(partial["cost_sum"])
            seconds_before = partial["seconds"]
        print(f"Resuming {config.resume}: epoch {start_epoch + 1}, batch {start_batch + 1}")
    if start_epoch >= config.epochs:
        print(
            f"Nothing to train: --epochs {config.epochs}"
            + (f" and {config.resume} has trained {start_epoch}" if config.resume else "")
            + "; evaluating the weights as they are",
            flush=True,
        )
    log.write_text("".join(json.dumps(record) + "\n" for record in records))
    save = Path(config.save) if config.save else None
    saved_epoch = None  # the epoch the last good checkpoint this run wrote ends
    print(
        f"Training {config.model} with {engine.name} on {engine.device} ({config.dtype}): "
        f"{n_batches} batches of {config.batch_size} per epoch",
        flush=True,
    )

    with StopOnSigint() as stop:
        for epoch in range(start_epoch, config.epochs):
            engine.begin_epoch(loader.order(epoch))
            bar = progress_bar(config.progress, n_batches, start_batch, f"Epoch {epoch + 1}")
            started = time.perf_counter()
            for batch in range(start_batch, n_batches):
                cost = engine.step(batch)
                if not math.isfinite(cost):
                    bar.close()
                    where = f"the loss is {cost} at epoch {epoch + 1}, batch {batch + 1}"
                    raise TrainingDiverged(_diverged(where, save, saved_epoch, config.resume))
                cost_sum += real(cost) / real(n_batches)  # avg_cost += cost / total_batch
                step += 1
                bar.update(cost)
                if on_batch is not None:
                    on_batch(BatchInfo(epoch + 1, batch + 1, step, cost, engine))
                # the step after this one would see a NaN loss; before a save there is none
                if (batch + 1 == n_batches or stop.requested) and not engine.finite():
                    bar.close()
                    where = (
                        f"the weights hold NaN or infinity after epoch {epoch + 1}, "
                        f"batch {batch + 1}"
                    )
                    raise TrainingDiverged(_diverged(where, save, saved_epoch, config.resume))
                if stop.requested and batch + 1 < n_batches:
                    bar.close()
                    seconds = seconds_before + time.perf_counter() - started
                    partial = {
                        "epoch": epoch + 1,
                        "batch": batch + 1,
                        "partial": True,
                        "cost_sum": float(cost_sum),
                        "seconds": seconds,
                    }
                    _interrupt(config, engine, epoch, step, [*records, partial])
            bar.close()
            seconds = seconds_before + time.perf_counter() - started
            images_per_s = n_batches * config.batch_size / seconds
            record = {
                "epoch": epoch + 1,
                "cost": float(cost_sum),
                "seconds": round(seconds, 3),
                "images_per_s": round(images_per_s, 1),
            }
            records.append(record)
            with log.open("a") as file:
                file.write(json.dumps(record) + "\n")
            line = EPOCH_LINE.format(epoch + 1, float(cost_sum))
            print(f"{line}  ({seconds:.1f} s, {images_per_s:.0f} img/s)", flush=True)
            if save is not None:
                save.parent.mkdir(parents=True, exist_ok=True)
                engine.save(
                    save,
                    epoch=epoch + 1,
                    step=step,
                    config=dataclasses.asdict(config),
                    metrics=records,
                )
                saved_epoch = epoch + 1
            start_batch, cost_sum, seconds_before = 0, real(0), 0.0
            if stop.requested:
                _interrupt(config, engine, epoch + 1, step, records)

    accuracy = engine.evaluate()
    print(f"Accuracy: {accuracy:.4f}", flush=True)
    final: dict[str, Any] = {"accuracy": accuracy, "test_images": len(test_set[0])}
    deck_accuracy = None
    if config.deck_eval:
        deck_accuracy = engine.evaluate(raw=True)
        final["deck_accuracy"] = deck_accuracy
        print(
            f"Accuracy (the deck's evaluation, on raw 0-255 pixels although the model was "
            f"trained on 0-1 inputs): {deck_accuracy:.4f}",
            flush=True,
        )
    with log.open("a") as file:
        file.write(json.dumps(final) + "\n")
    if config.plot:
        save_plot(config.plot, records, accuracy, deck_accuracy)
    saved = [save] if saved_epoch else []  # the checkpoint, when this run wrote one
    report([*saved, log, *([Path(config.plot)] if config.plot else [])])
    return TrainResult(
        costs=[r["cost"] for r in records],
        seconds=[r["seconds"] for r in records],
        images_per_s=[r["images_per_s"] for r in records],
        accuracy=accuracy,
        deck_accuracy=deck_accuracy,
        steps=step,
        checkpoint=save,
        metrics=log,
        plot=Path(config.plot) if config.plot else None,
    )


# -- helpers --------------------------------------------------------------------------------


def _check_packages(config: TrainConfig) -> None:
    """Missing optional packages fail now, not after an hour of training."""
    if config.plot and importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install matplotlib (or 'minicnn[plot]')")
    if config.progress == "bar" and importlib.util.find_spec("tqdm") is None:
        raise ValueError("--progress bar needs tqdm: pip install tqdm")


@contextlib.contextmanager
def _sole_writer(log: Path) -> Iterator[None]:
    """Hold an exclusive lock on the metrics log while the run lasts, so that two runs never
    interleave their lines (the kernel drops the lock when a run dies, even by ``kill -9``).
    A run that fails before it logs anything leaves no empty log behind: the next run would
    take it for another run's (``outputs.check_outputs``)."""
    created = not log.exists()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if os.name == "posix":
            import fcntl  # POSIX only

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(
                    f"{log}: another training run is writing this metrics log (and the "
                    "checkpoint beside it); wait for it, or give this run other --save and "
                    "--metrics paths"
                ) from None
        yield
    except BaseException:
        if created and os.fstat(fd).st_size == 0:
            log.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def build_engine(config: TrainConfig, train_set: Split, test_set: Split) -> Engine:
    """The engine ``config.engine`` names, seeded and built; torch is imported only here."""
    if config.engine == "minicnn":
        return MinicnnEngine(config, train_set, test_set)
    try:
        from reference.engine import TorchEngine  # imports torch: only for --engine torch
    except ImportError as error:
        raise ValueError(f"--engine torch needs PyTorch ({error}); pip install torch") from None
    return TorchEngine(config, train_set, test_set)


def _first(split: Split, limit: int | None) -> Split:
    images, labels = split
    return (images, labels) if limit is None else (images[:limit], labels[:limit])


def _find_data(config: TrainConfig) -> Path:
    """The MNIST directory; downloads it first (``--download``, the default) when absent."""
    try:
        return find_mnist(config.data_dir)
    except FileNotFoundError as error:
        if not config.download:
            raise FileNotFoundError(f"{error} (not downloading: --no-download)") from None
    print(f"MNIST not found; downloading it to {resolve_data_dir(config.data_dir)}", flush=True)
    return ensure_mnist(config.data_dir, download=True)


def _check_resumable(
    checkpoint: Checkpoint, config: TrainConfig, n_batches: int
) -> tuple[list[dict], dict | None]:
    """The checkpoint's epoch records and its mid-epoch position (None at an epoch's end), after
    checking that it continues the run ``config`` describes; ValueError otherwise."""
    where = f"--resume {config.resume}"
    for name in TRAJECTORY_FIELDS:
        saved, asked = checkpoint.config.get(name), getattr(config, name)
        if saved != asked:
            raise ValueError(
                f"{where}: it was trained with --{option_flag(name)} {saved}, "
                f"this run asks for {asked}; resume with the options it was started with"
            )
    if checkpoint.epoch > config.epochs:
        raise ValueError(
            f"{where}: it has trained {checkpoint.epoch} epochs, more than --epochs "
            f"{config.epochs} (which counts the total)"
        )
    metrics = checkpoint.metrics
    partial = metrics[-1] if metrics and isinstance(metrics[-1], dict) else {}
    partial = partial if partial.get("partial") is True else None
    records = list(metrics[:-1] if partial is not None else metrics)
    numbers = (int, float)
    for record in records:
        if not (
            isinstance(record, dict)
            and all(isinstance(record.get(k), numbers) for k in _RECORD_FIELDS)
        ):
            raise ValueError(f"{where}: metrics entry {record!r} lacks numeric {_RECORD_FIELDS}")
    if len(records) != checkpoint.epoch:
        raise ValueError(
            f"{where}: its metrics hold {len(records)} epochs, its metadata says {checkpoint.epoch}"
        )
    batch = 0
    if partial is not None:
        batch = partial.get("batch")
        if not (
            isinstance(batch, int)
            and 0 < batch < n_batches
            and isinstance(partial.get("cost_sum"), numbers)
            and math.isfinite(partial["cost_sum"])
            and isinstance(partial.get("seconds"), numbers)
        ):
            raise ValueError(
                f"{where}: its mid-epoch entry {partial!r} needs a batch from 1 to "
                f"{n_batches - 1}, a finite cost_sum and seconds"
            )
    if checkpoint.step != checkpoint.epoch * n_batches + batch:
        raise ValueError(
            f"{where}: step {checkpoint.step} is not epoch {checkpoint.epoch} "
            f"x {n_batches} batches + {batch}; was the data changed?"
        )
    return records, partial


def _restore(engine: Engine, checkpoint: Checkpoint) -> None:
    """``engine.restore(checkpoint)``, its complaints about the saved state naming the file."""
    try:
        engine.restore(checkpoint)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
        if isinstance(error, ValueError) and str(checkpoint.path) in str(error):
            raise
        raise ValueError(
            f"--resume {checkpoint.path}: its saved state does not fit this run "
            f"({type(error).__name__}: {error})"
        ) from None


def _diverged(where: str, save: Path | None, saved_epoch: int | None, resume: str | None) -> str:
    """The message of ``TrainingDiverged``: where, and which checkpoint is the last good one."""
    if saved_epoch is not None:
        kept = f"the last good checkpoint, {save} (end of epoch {saved_epoch}), is kept"
    elif resume:
        kept = f"nothing was saved; {resume} is the last good checkpoint"
    else:
        kept = "no checkpoint was written" + ("" if save else " (no --save)")
    return f"training diverged: {where}. Stopped; {kept}. Try a smaller --lr."


def _interrupt(config: TrainConfig, engine: Engine, epoch: int, step: int, metrics: list) -> None:
    """Save a resumable checkpoint, say how to resume, raise ``TrainingInterrupted``."""
    path = Path(config.save or f"runs/{config.model}-{config.engine}-interrupted.safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    engine.save(path, epoch=epoch, step=step, config=dataclasses.asdict(config), metrics=metrics)
    command = train_command(config, resume=path)
    print(
        f"Interrupted: saved a resumable checkpoint to {path}\nResume with: {command}",
        file=sys.stderr,
        flush=True,
    )
    raise TrainingInterrupted(path, command)
