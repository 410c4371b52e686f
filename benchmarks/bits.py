"""The float32 bits of a short training run, as one hash per model: a change that must not touch
the arithmetic (a refactor, a move) keeps every hash.

    python -m benchmarks.bits --data-dir minicnn/data/mnist_files          # 30 steps of each model

Each model trains ``--steps`` batches of 100 from the deck's seed (777) on the first MNIST
images, through ``minicnn.train.train`` as ``minicnn train`` runs it, then the weights and the
Adam state are hashed (SHA-256, the first 16 hex digits), names and bytes in order. The bits
depend on the thread count (each thread sums its images' weight gradients; the partial sums
add up in slice order) and may depend on the CPU (BLAS kernels differ): compare hashes made on
one machine with one ``--threads``, before and after a change.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np

from minicnn.kernels.runtime.threads import get_num_threads
from minicnn.train import BatchInfo, TrainConfig, train

BATCH = 100


def weights_hash(engine) -> str:
    """SHA-256 of the model's state_dict and the optimizer's state, in order (16 hex digits)."""
    digest = hashlib.sha256()
    for name, value in engine.model.state_dict().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    for buffers in engine.optimizer.state_dict()["state"].values():
        for key, value in sorted(buffers.items()):
            digest.update(key.encode())
            digest.update(np.asarray(value).tobytes())
    return digest.hexdigest()[:16]


def run(model: str, steps: int, data_dir: str | None, threads: int | None) -> tuple[str, float]:
    """(hash, last batch's cost) after ``steps`` training steps of ``model``."""
    seen: dict[str, object] = {}

    def keep(info: BatchInfo) -> None:
        seen["engine"], seen["cost"] = info.engine, info.cost

    with tempfile.TemporaryDirectory() as scratch:
        config = TrainConfig(
            model=model,
            epochs=1,
            train_limit=steps * BATCH,
            test_limit=BATCH,
            data_dir=data_dir,
            download=False,
            threads=threads,
            progress="none",
            metrics=str(Path(scratch) / "metrics.jsonl"),
        )
        train(config, on_batch=keep)
    return weights_hash(seen["engine"]), float(seen["cost"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bits", description=__doc__)
    parser.add_argument("--data-dir", default=None, help="MNIST directory ($MINICNN_DATA)")
    parser.add_argument("--models", nargs="+", default=["cnn", "deep"], choices=["cnn", "deep"])
    parser.add_argument("--steps", type=int, default=30, help="batches of 100 (default 30)")
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    args = parser.parse_args(argv)
    results = {m: run(m, args.steps, args.data_dir, args.threads) for m in args.models}
    print(f"{args.steps} steps, {args.threads or get_num_threads()} threads, float32:")
    for model, (digest, cost) in results.items():
        print(f"{model}: {digest}  (last cost {cost!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
