"""The timed parts of the suite that run in this process: throughput, per-layer times, thread
scaling. Each builds ``benchmarks.engines`` runners and times them with ``benchmarks.timing``
(interleaved, medians) or ``benchmarks.layers``.
"""

from __future__ import annotations

from benchmarks import engines as E
from benchmarks import flops, layers, timing

LAYER_ROUNDS = 3  # per-layer timings alternate between the engines this many times


def set_threads(minicnn_threads: int, torch_threads: int | None, blas: int = 1) -> dict:
    """minicnn: its kernels on ``minicnn_threads``, NumPy's BLAS on ``blas`` (1, as minicnn
    sets it: see ``minicnn.kernels.runtime.threads``); torch on ``torch_threads`` (None: as it is).
    Returns the settings now in force."""
    import torch

    from minicnn.kernels.runtime.threads import set_blas_threads, set_num_threads

    set_num_threads(minicnn_threads)
    set_blas_threads(blas)
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    return {
        "minicnn_numba": minicnn_threads,
        "minicnn_blas": blas,
        "torch": torch.get_num_threads(),
    }


def engines_for(engine_list: list[str], batch: int, numpy_batches: list[int]) -> list[str]:
    return [e for e in engine_list if e != "minicnn-numpy" or batch in numpy_batches]


def throughput(args, data: E.Data, models, batches, engine_list, threads: dict) -> list[dict]:
    """One row per (model, mode, batch, engine): images/s at the median, or why not."""
    rows = []
    for model in models:
        for batch in batches:
            chosen = engines_for(engine_list, batch, args.numpy_batches)
            runnable = [e for e in chosen if E.available(e)[0]]
            runners = [E.make_runner(e, model, batch, data) for e in runnable]
            for mode in E.MODES:
                print(f"  {model} {mode} batch {batch}: {', '.join(runnable)}", flush=True)
                found = (
                    timing.measure(
                        runners, mode, repeats=args.repeats, target_s=args.target_seconds
                    )
                    if runners
                    else {}
                )
                for engine in chosen:
                    row = {
                        "model": model,
                        "mode": mode,
                        "batch": batch,
                        "engine": engine,
                        "threads": threads,
                    }
                    if engine in found:
                        rows.append({**row, "status": "measured", **found[engine]})
                    else:
                        rows.append({**row, "status": E.available(engine)[1]})
            del runners
    return rows


def per_layer(args, data: E.Data, models) -> dict:
    """Per-layer times at ``--layer-batch`` for minicnn-numba and torch-cpu, in
    ``LAYER_ROUNDS`` alternating rounds (medians of the rounds), with FLOPs and GFLOP/s per row."""
    result = {}
    steps = max(1, args.layer_steps // LAYER_ROUNDS)
    for model in models:
        print(f"  layers: {model}", flush=True)
        counts = {c.name: c for c in flops.count(model)}
        runners = {
            e: E.make_runner(e, model, args.layer_batch, data)
            for e in ("minicnn-numba", "torch-cpu")
        }
        found: dict[str, list[dict]] = {e: [] for e in runners}
        for _ in range(LAYER_ROUNDS):
            for engine, runner in runners.items():
                found[engine].append(layers.layer_times(runner, steps=steps, warmup=1))
        result[model] = {"batch": args.layer_batch, "engines": {}}
        for engine, results in found.items():
            merged = layers.merge(results)
            for row in merged["rows"]:
                count = counts.get(row["name"])
                fwd, bwd = (count.forward_macs, count.backward_macs) if count else (0, 0)
                row.update(
                    forward_macs=fwd,
                    backward_macs=bwd,
                    forward_gflops=flops.achieved(fwd, args.layer_batch, row["forward_s"]),
                    backward_gflops=flops.achieved(bwd, args.layer_batch, row["backward_s"]),
                )
            result[model]["engines"][engine] = merged
    return result


def scaling(args, data: E.Data, models, restore: tuple[int, int | None]) -> list[dict]:
    """Training images/s for each thread count, both CPU engines set to it (minicnn's BLAS
    stays on ``--blas-threads``)."""
    rows = []
    try:
        for count in args.thread_counts:
            threads = set_threads(count, count, args.blas_threads)
            for model in models:
                for batch in args.scaling_batches:
                    print(f"  scaling: {count} thread(s), {model} batch {batch}", flush=True)
                    runners = [
                        E.make_runner(e, model, batch, data) for e in ("minicnn-numba", "torch-cpu")
                    ]
                    found = timing.measure(
                        runners, "train", repeats=args.repeats, target_s=args.target_seconds
                    )
                    for engine, entry in found.items():
                        rows.append(
                            {
                                "model": model,
                                "batch": batch,
                                "engine": engine,
                                "thread_count": count,
                                "threads": threads,
                                **entry,
                            }
                        )
    finally:
        set_threads(*restore, args.blas_threads)
    return rows
