"""The results table: full 15-epoch runs of the deck's settings, both models, both engines.

Measures test accuracy (correct 0-1 inputs, and the deck's 0-255 evaluation), wall time and
training images/s for each (model, engine) pair, one run after another in one process, and
writes the Markdown table to ``docs/results.md`` (the per-epoch logs beside it, in
``docs/results/``). Run from the repository root:

    python -m benchmarks.results --data-dir minicnn/data/mnist_files

Options: ``--models cnn deep``, ``--engines minicnn torch``, ``--epochs 15``, ``--device``
(the torch engine's), ``--out docs/results.md``. Each run is the same as
``minicnn train --model M --engine E --deck-eval`` with the deck's defaults.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

from minicnn.train import TrainConfig, train

DECK = {"cnn": 0.9883, "deep": 0.9835}  # the deck's reported test accuracies
TARGETS = {"cnn": 0.990, "deep": 0.992}


def machine() -> str:
    """One line naming this machine: CPU model, cores, Python and library versions."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    import numba
    import numpy

    versions = f"Python {platform.python_version()}, NumPy {numpy.__version__}, "
    versions += f"Numba {numba.__version__}"
    try:
        import torch

        versions += f", torch {torch.__version__}"
        if torch.cuda.is_available():
            versions += f"; GPU {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores; {versions}"


def run(model: str, engine: str, args: argparse.Namespace, logs: Path) -> dict:
    log = str(logs / f"{model}-{engine}.jsonl")
    config = TrainConfig(
        model=model,
        engine=engine,
        device=args.device,
        epochs=args.epochs,
        data_dir=args.data_dir,
        download=False,
        deck_eval=True,
        metrics=log,
        progress="none",
    )
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    train_seconds = sum(result.seconds)
    device = "cpu"
    if engine == "torch":
        from reference.engine import resolve_device

        device = resolve_device(args.device).type
    return {
        "model": model,
        "engine": engine,
        "device": device,
        "accuracy": result.accuracy,
        "deck_accuracy": result.deck_accuracy,
        "wall_s": wall,
        "train_s": train_seconds,
        "images_per_s": sum(r * s for r, s in zip(result.images_per_s, result.seconds))
        / train_seconds,
        "final_cost": result.costs[-1],
    }


def engine(row: dict) -> str:
    """The engine's name, with the device when it is a GPU."""
    device = row.get("device", "cpu")
    return row["engine"] if device == "cpu" else f"{row['engine']} ({device})"


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "| model | engine | test accuracy | deck's evaluation (0-255) | deck reported | "
        "training time | images/s | final cost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {engine(r)} | {r['accuracy']:.4f} | {r['deck_accuracy']:.4f} | "
            f"{DECK[r['model']]:.4f} | {r['train_s'] / 60:.1f} min | {r['images_per_s']:,.0f} | "
            f"{r['final_cost']:.9f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory")
    parser.add_argument("--models", nargs="+", default=["cnn", "deep"], choices=["cnn", "deep"])
    parser.add_argument(
        "--engines", nargs="+", default=["minicnn", "torch"], choices=["minicnn", "torch"]
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default="docs/results.md")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the Markdown from summary.json only"
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    logs = out.with_suffix("")  # docs/results/ holds the per-epoch logs
    logs.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        rows = json.loads((logs / "summary.json").read_text())
    else:
        # Rows of pairs not run this time are kept, so one pair can be rerun on its own.
        summary = logs / "summary.json"
        rows = json.loads(summary.read_text()) if summary.exists() else []
        for model in args.models:
            for engine in args.engines:
                print(f"== {model} on {engine}", flush=True)
                row = run(model, engine, args, logs)
                rows = [r for r in rows if (r["model"], r["engine"]) != (model, engine)]
                rows.append(row)
                rows.sort(key=lambda r: (r["model"] != "cnn", r["engine"] != "minicnn"))
                summary.write_text(json.dumps(rows, indent=2) + "\n")
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.results", *(a for a in argv if a != "--render-only")])
    text = (
        f"# Results: the deck's runs, both models, both engines\n\n"
        f"{args.epochs} epochs, Adam (lr 0.001), batch 100, seed 777, the deck's models; "
        f"test accuracy on the 10,000 test images with the inputs scaled as in training. "
        f"The deck's evaluation column repeats its bug (raw 0-255 pixels, see the README).\n\n"
        f"{table(rows, args)}\n\n"
        f"Targets (correct evaluation): CNN ≥ {TARGETS['cnn']}, DeepCNN ≥ {TARGETS['deep']}.\n\n"
        f"For one seed both engines start from the same weights (minicnn draws torch's initial "
        f"weights bit for bit) and train on the same batches in the same order; in float64 "
        f"they then agree step for step to 1e-9 (tests/test_training_equivalence.py). In "
        f"float32 each engine rounds differently, Adam amplifies the difference, and the two "
        f"runs separate within a few hundred steps, so their final accuracies differ by about "
        f"as much as two seeds of one engine do ([seeds.md](seeds.md) measures that spread). "
        f"DeepCNN's dropout masks come from each engine's own generator.\n\n"
        f"Machine: {machine()}. Written {datetime.date.today().isoformat()}; each (model, "
        f"engine) row is kept from its last run (`--models`, `--engines` rerun some), the "
        f"runs one after another in one process, default threads.\n\n"
        f"Regenerate with `{command}`; per-epoch logs are in `{logs.as_posix()}/`.\n"
    )
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
