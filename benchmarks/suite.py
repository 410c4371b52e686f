"""``python -m benchmarks``: minicnn against PyTorch, side by side, in one run.

Measures, in order (each part can be skipped; see ``--help``):

1. validation: every engine's logits and gradients against torch's (``benchmarks.validate``);
   the run stops before timing anything if one disagrees;
2. throughput: training-step and inference images/s for each model, batch size and engine,
   the engines interleaved per configuration (``benchmarks.timing``);
3. per-layer forward and backward times at batch 100, with achieved GFLOP/s
   (``benchmarks.layers``, ``benchmarks.flops``);
4. thread scaling: training images/s with 1 and 2 threads for minicnn-numba and torch-cpu;
5. memory: peak RSS of training, one fresh process per engine (``benchmarks.peak``);
6. JIT: compile time with a cold and a warm cache, and ``minicnn train``'s time to its first
   batch (``benchmarks.jit``).

Writes ``OUT/latest.json`` (every raw sample and the machine's description),
``OUT/latest.md`` (the tables, ratios against the targets) and ``OUT/latest.png``. Run from
the repository root:

    python -m benchmarks --data-dir minicnn/data/mnist_files          # the full run, ~10 min
    python -m benchmarks --quick                                   # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

from benchmarks import engines as E
from benchmarks import flops, jit, machine, peak, validate
from benchmarks.speed import per_layer, scaling, set_threads, throughput
from benchmarks.targets import evaluate_targets, ratios

SCHEMA = "minicnn-bench/1"
LAYER_BATCH = 100
QUIET_CORES = 0.2  # other processes' CPU use below which the machine counts as quiet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="few repeats and short samples: a smoke run")
    add("--out", default="benchmarks/reports", help="output directory (default: %(default)s)")
    add("--name", default="latest", help="file name stem of the outputs (default: %(default)s)")
    add(
        "--data-dir",
        default=None,
        help="MNIST directory (default: $MINICNN_DATA; without "
        "either, random data of MNIST's shape, and no first-batch measurement)",
    )
    add("--models", nargs="+", default=["cnn", "deep"], choices=list(E.MODEL_NAMES))
    add("--engines", nargs="+", default=list(E.ENGINES), choices=list(E.ENGINES))
    add("--batches", nargs="+", type=int, default=[1, 32, 100, 256])
    add(
        "--numpy-batches",
        nargs="+",
        type=int,
        default=[1, 32],
        help="batches for minicnn-numpy, the slow twins (default: %(default)s)",
    )
    add(
        "--threads",
        type=int,
        default=None,
        help="threads for both engines (default: every "
        "usable core for minicnn's Numba kernels, with one BLAS thread; torch's own default)",
    )
    add(
        "--blas-threads",
        type=int,
        default=1,
        help="threads of NumPy's BLAS under minicnn (default: 1, what "
        "minicnn.kernels.runtime.threads.set_num_threads sets)",
    )
    add("--thread-counts", nargs="+", type=int, default=[1, 2], help="for the scaling part")
    add("--scaling-batches", nargs="+", type=int, help="default: 32 100 256 (quick: 100)")
    add("--memory-batches", nargs="+", type=int, help="default: 32 100 256 (quick: 100)")
    add("--repeats", type=int, default=None, help="samples per engine (default 7; quick 2)")
    add(
        "--target-seconds",
        type=float,
        default=None,
        help="length of one sample (default 0.3; quick 0.05)",
    )
    add("--layer-steps", type=int, default=None, help="steps timed per layer (default 12)")
    add("--layer-batch", type=int, default=LAYER_BATCH)
    for part in ("validation", "throughput", "layers", "scaling", "memory", "jit"):
        add(f"--skip-{part}", action="store_true", help=f"skip the {part} part")
    add("--no-chart", action="store_true", help="do not draw the PNG")
    add(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="MINUTES",
        help="first wait up to MINUTES until other processes use less than 0.2 CPUs (a "
        "shared machine)",
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.target_seconds = args.target_seconds or (0.05 if args.quick else 0.3)
    args.layer_steps = args.layer_steps or (3 if args.quick else 12)
    args.scaling_batches = args.scaling_batches or ([100] if args.quick else [32, 100, 256])
    args.memory_batches = args.memory_batches or ([100] if args.quick else [32, 100, 256])
    for name in ("batches", "numpy_batches", "thread_counts", "scaling_batches", "memory_batches"):
        if any(v < 1 for v in getattr(args, name)):
            parser.error(f"--{name.replace('_', '-')}: every value must be >= 1")
    return args


def wait_quiet(seconds: float, below: float = QUIET_CORES) -> None:
    """Sleep until other processes use less than ``below`` CPUs' worth of time over a
    5-second window, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = machine.cpu_times()
        time.sleep(5)
        others = machine.others_cores(before, machine.cpu_times())
        if others is None or others < below:
            return
        print(f"  waiting for a quieter machine: others use {others:.1f} CPUs", flush=True)
    print("  the machine is still busy; starting anyway", flush=True)


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    """Every part the options ask for; the record ``main`` writes out."""
    import numba
    import torch

    usable = machine.cores()["usable"]
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet * 60)
    started = time.perf_counter()
    minicnn_threads = args.threads or min(usable, numba.config.NUMBA_NUM_THREADS)
    torch_default = torch.get_num_threads()
    threads = set_threads(minicnn_threads, args.threads, args.blas_threads)
    max_batch = max([*args.batches, *args.scaling_batches, args.layer_batch, 8])
    data = E.load_data(args.data_dir, max_batch * E.BATCHES_HELD)
    record = {
        "schema": SCHEMA,
        "command": "python -m benchmarks " + shlex.join(argv),
        "machine": machine.describe(),
        "data": data.source,
        "settings": {
            **{k: v for k, v in vars(args).items()},
            "threads": threads,
            "torch_default_threads": torch_default,
        },
    }
    skipped = {"status": "skipped"}
    print(f"minicnn benchmarks: {machine.one_line(record['machine'])}\n  data: {data.source}")
    before = machine.cpu_times()
    time.sleep(1)
    others = machine.others_cores(before, machine.cpu_times())
    if others is not None and others > QUIET_CORES:
        print(
            f"  warning: other processes use {others:.1f} CPUs; they will disturb the "
            "timings (torch's most)",
            flush=True,
        )

    if args.skip_validation:
        record["validation"] = skipped
    else:
        print("validating against torch-cpu", flush=True)
        X, Y = data.images[:8], data.labels[:8]  # (8, 1, 28, 28), (8,)
        record["validation"] = validate.validate(args.models, args.engines, X, Y)
    if args.skip_throughput:
        record["throughput"] = skipped
    else:
        print("throughput", flush=True)
        record["throughput"] = throughput(
            args, data, args.models, args.batches, args.engines, threads
        )
    record["flops"] = {m: [dataclasses.asdict(c) for c in flops.count(m)] for m in args.models}
    record["layers"] = skipped if args.skip_layers else per_layer(args, data, args.models)
    if args.skip_scaling:
        record["scaling"] = skipped
    else:
        record["scaling"] = scaling(
            args,
            data,
            args.models,
            (minicnn_threads, torch_default if args.threads is None else args.threads),
        )
    if args.skip_memory:
        record["memory"] = skipped
    else:
        print("memory (one process per measurement)", flush=True)
        steps = 2 if args.quick else 5
        record["memory"] = peak.measure_all(
            args.models,
            args.memory_batches,
            steps,
            {"minicnn-numba": minicnn_threads, "torch-cpu": args.threads},
        )
    if args.skip_jit:
        record["jit"] = skipped
    else:
        print("JIT compile time and first batch (one process per measurement)", flush=True)
        data_dir = args.data_dir or os.environ.get("MINICNN_DATA")
        record["jit"] = jit.measure_all(args.models, data_dir, batch=100)
    record["ratios"] = ratios(record)
    record["targets"] = evaluate_targets(record)
    record["elapsed_s"] = time.perf_counter() - started
    record["load_average_end"] = machine.describe()["load_average"]
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        record = run(args, argv)
    except validate.ValidationError as error:
        print(f"benchmarks: validation failed, nothing timed: {error}", file=sys.stderr)
        return 1
    from benchmarks import report
    from benchmarks.chart import draw

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    chart = None
    if not args.no_chart and isinstance(record["throughput"], list):
        chart = out / f"{args.name}.png"
        draw(record, chart)
    text = report.markdown(record, chart.name if chart else None)
    (out / f"{args.name}.md").write_text(text)
    print(
        f"\n{report.summary(record)}\nwrote {out / args.name}.json, .md"
        f"{', .png' if chart else ''} in {record['elapsed_s']:.0f} s"
    )
    return 0
