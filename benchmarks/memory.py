"""Memory over a long run: does the resident set size stay flat from epoch to epoch?

Trains each (model, engine) pair for a few short epochs on the first images of MNIST's
training set, on the CPU, each pair in a fresh process, through ``minicnn.train.train`` (a
checkpoint written every epoch, as ``--save`` does). After every epoch it reads the process's
resident set size (VmRSS) and its peak so far (VmHWM) from ``/proc/self/status``. A leak (arrays
kept alive by the tape, a growing cache) shows as RSS growing by about the same amount every
epoch. The first epoch's growth is JIT compilation, the data and the allocator warming up, so
the verdict looks at the epochs after it: the mean growth per epoch from the end of epoch 1 to
the end of the last, against ``--limit-mib``. Run from the repository root (Linux: /proc):

    python -m benchmarks.memory --data-dir minicnn/data/mnist_files

Options: ``--models cnn deep``, ``--engines minicnn torch``, ``--epochs 5``, ``--images 6000``
(per epoch), ``--batch-size 100``, ``--threads N``, ``--limit-mib 2``, ``--json PATH`` (default
``runs/memory.json``). It prints a table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.results import machine
from minicnn.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent  # where ``python -m benchmarks.memory`` works


def memory_mib() -> dict[str, float]:
    """This process's resident set size now (``rss``) and at its peak (``hwm``), in MiB."""
    fields = {"VmRSS": "rss", "VmHWM": "hwm"}
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in fields:
                values[fields[key]] = int(rest.split()[0]) / 1024  # the file counts kB
    return values


def measure(model: str, engine: str, args: argparse.Namespace) -> list[dict]:
    """Train one (model, engine) pair in this process: one record per epoch, taken right after
    the epoch's last step (``epoch``, ``rss``, ``hwm`` in MiB, ``cost``)."""
    n_batches = args.images // args.batch_size
    records = []

    def after_step(info) -> None:
        if info.batch == n_batches:
            records.append({"epoch": info.epoch, **memory_mib(), "cost": info.cost})

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            model=model,
            engine=engine,
            device="cpu",
            epochs=args.epochs,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
            download=False,
            save=f"{tmp}/run.safetensors",
            train_limit=args.images,
            test_limit=args.batch_size,
            threads=args.threads,
            progress="none",
        )
        with contextlib.redirect_stdout(io.StringIO()):  # the epoch lines; the table says more
            train(config, on_batch=after_step)
    return records


def growth(records: list[dict]) -> float | None:
    """Mean RSS growth per epoch after the first (MiB); None with fewer than two epochs."""
    if len(records) < 2:
        return None
    return (records[-1]["rss"] - records[0]["rss"]) / (len(records) - 1)


def table(runs: list[dict], limit: float) -> str:
    """One row per (model, engine): RSS after each epoch, peak, growth, verdict."""
    epochs = max(len(run["records"]) for run in runs)
    head = [
        "model",
        "engine",
        *(f"epoch {e + 1}" for e in range(epochs)),
        "peak",
        "growth/epoch",
        "verdict",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for run in runs:
        rss = [f"{r['rss']:.1f}" for r in run["records"]]
        peak = max(r["hwm"] for r in run["records"])
        slope = growth(run["records"])
        verdict = "?" if slope is None else ("flat" if slope <= limit else "GROWS")
        cells = [
            run["model"],
            run["engine"],
            *rss,
            f"{peak:.1f}",
            "-" if slope is None else f"{slope:+.2f}",
            verdict,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n".join(lines) + "\n(MiB; RSS after each epoch, peak RSS, mean growth per epoch "
        "after the first)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the MNIST directory")
    parser.add_argument("--models", nargs="+", default=["cnn", "deep"])
    parser.add_argument("--engines", nargs="+", default=["minicnn", "torch"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--images", type=int, default=6000, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--limit-mib",
        type=float,
        default=2.0,
        help="the largest mean growth per epoch that counts as flat",
    )
    parser.add_argument("--json", default="runs/memory.json", help="where to write the numbers")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:  # one pair in this fresh process: its records as JSON on stdout
        print(json.dumps(measure(*args.child, args)))
        return 0
    options = [
        "--data-dir",
        str(Path(args.data_dir).resolve()),
        "--epochs",
        str(args.epochs),
        "--images",
        str(args.images),
        "--batch-size",
        str(args.batch_size),
    ]
    options += [] if args.threads is None else ["--threads", str(args.threads)]
    runs = []
    for model in args.models:
        for engine in args.engines:
            child = [sys.executable, "-m", "benchmarks.memory", *options, "--child", model, engine]
            result = subprocess.run(child, cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{model} / {engine} failed:\n{result.stderr[-3000:]}")
            records = json.loads(result.stdout.strip().splitlines()[-1])
            runs.append(
                {
                    "model": model,
                    "engine": engine,
                    "records": records,
                    "growth_mib_per_epoch": growth(records),
                }
            )
            print(f"{model} / {engine}: done", file=sys.stderr, flush=True)
    print(table(runs, args.limit_mib))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("child", "json")}
    out.write_text(json.dumps({"machine": machine(), "settings": settings, "runs": runs}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
