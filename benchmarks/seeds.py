"""How much one seed decides: full 15-epoch runs of the deck's settings for several seeds.

The results table (``python -m benchmarks.results``) is one seed's run, the deck's 777. In
float32 two engines, or two seeds of one engine, end up on different trajectories, and their
test accuracies differ; this measures by how much, so that one seed's number can be read
against the spread it was drawn from. Run from the repository root:

    python -m benchmarks.seeds --data-dir minicnn/data/mnist_files --seeds 1 2 3

Options: ``--models cnn`` (``deep`` takes about 7 minutes a run), ``--engines minicnn torch``,
``--seeds``, ``--epochs 15``, ``--out docs/seeds.md`` (the per-epoch logs beside it, in
``docs/seeds/``), ``--results`` (the results table's runs, added as seed 777's),
``--render-only``. Each run
is ``minicnn train --model M --engine E --seed S`` with the deck's other defaults.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
from pathlib import Path

from benchmarks.results import TARGETS, machine
from minicnn.train import TrainConfig, train

RESULTS_SEED = 777  # the deck's seed: the results table's runs


def run(model: str, engine: str, seed: int, args: argparse.Namespace, logs: Path) -> dict:
    """One full training run's test accuracy."""
    log = str(logs / f"{model}-{engine}-seed{seed}.jsonl")
    config = TrainConfig(
        model=model,
        engine=engine,
        seed=seed,
        epochs=args.epochs,
        data_dir=args.data_dir,
        download=False,
        metrics=log,
        progress="none",
    )
    result = train(config)
    return {"model": model, "engine": engine, "seed": seed, "accuracy": result.accuracy}


def table(rows: list[dict], engines: list[str]) -> str:
    """One line per (model, seed) with each engine's accuracy, then each engine's spread."""
    accuracy = {(r["model"], r["engine"], r["seed"]): r["accuracy"] for r in rows}
    models = sorted({r["model"] for r in rows}, key=lambda m: m != "cnn")
    lines = [
        "| model | seed | " + " | ".join(engines) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in engines) + " |",
    ]
    for model in models:
        for seed in sorted({r["seed"] for r in rows if r["model"] == model}):
            cells = [accuracy.get((model, e, seed)) for e in engines]
            text = ["—" if a is None else f"{a:.4f}" for a in cells]
            lines.append(f"| {model} | {seed} | " + " | ".join(text) + " |")
        for name, pick in (("mean", statistics.mean), ("lowest", min), ("highest", max)):
            cells = []
            for engine in engines:
                values = [a for (m, e, _), a in accuracy.items() if (m, e) == (model, engine)]
                cells.append(f"{pick(values):.4f}" if values else "—")
            lines.append(f"| {model} | *{name}* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def commands(rows: list[dict]) -> str:
    """The commands that ran the table's seeds, one per model."""
    runs = []
    for model in sorted({r["model"] for r in rows}, key=lambda m: m != "cnn"):
        seeds = sorted({r["seed"] for r in rows if r["model"] == model} - {RESULTS_SEED})
        runs.append(
            f"`python -m benchmarks.seeds --data-dir minicnn/data/mnist_files --models "
            f"{model} --seeds {' '.join(map(str, seeds))}`"
        )
    return " and ".join(runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory")
    parser.add_argument("--models", nargs="+", default=["cnn"], choices=["cnn", "deep"])
    parser.add_argument(
        "--engines", nargs="+", default=["minicnn", "torch"], choices=["minicnn", "torch"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default="docs/seeds.md")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the Markdown from the runs already made"
    )
    parser.add_argument(
        "--results",
        default="docs/results/summary.json",
        help="the results table's runs, shown as seed 777's",
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    logs = out.with_suffix("")  # docs/seeds/ holds the per-epoch logs
    logs.mkdir(parents=True, exist_ok=True)
    summary = logs / "summary.json"
    rows = json.loads(summary.read_text()) if summary.exists() else []
    for model in [] if args.render_only else args.models:
        for seed in args.seeds:
            for engine in args.engines:
                print(f"== {model} on {engine}, seed {seed}", flush=True)
                row = run(model, engine, seed, args, logs)
                key = (model, engine, seed)
                rows = [r for r in rows if (r["model"], r["engine"], r["seed"]) != key] + [row]
                summary.write_text(json.dumps(rows, indent=2) + "\n")
    results = Path(args.results)
    if results.exists():  # the results table's runs: seed 777's, for the models run here
        models = {r["model"] for r in rows}
        rows = [r for r in rows if r["seed"] != RESULTS_SEED] + [
            {
                "model": r["model"],
                "engine": r["engine"],
                "seed": RESULTS_SEED,
                "accuracy": r["accuracy"],
            }
            for r in json.loads(results.read_text())
            if r["model"] in models
        ]
    targets = ", ".join(f"{m} ≥ {t}" for m, t in TARGETS.items())
    text = (
        f"# How much one seed decides\n\n"
        f"Test accuracy (correct evaluation) after {args.epochs} epochs of the deck's settings "
        f"(Adam, lr 0.001, batch 100) for several seeds; seed 777's rows are the results "
        f"table's runs ([results.md](results.md)). For each seed both engines start from the "
        f"same weights and batches; in float32 their trajectories then separate, as two "
        f"seeds' do. The project's targets ({targets}) are single runs' numbers: read them "
        f"against the spread below.\n\n"
        f"{table(rows, args.engines)}\n\n"
        f"Machine: {machine()}. Measured {datetime.date.today().isoformat()}, default threads.\n\n"
        f"Regenerate with {commands(rows)}; per-epoch logs are in `{logs.as_posix()}/`.\n"
    )
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
