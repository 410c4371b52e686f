"""JIT compile time, and how long ``minicnn train`` takes to finish its first batch.

minicnn's fast kernels are compiled by Numba on their first call and cached on disk
(``@njit(cache=True)``), so a process pays for compilation once per machine, not per run.

*Compile time*: a worker process (``python -m benchmarks.jit --worker MODEL``) is started with
``NUMBA_CACHE_DIR`` set to an empty temporary directory, so nothing is cached: it times
``import minicnn``, the first training step (every kernel compiles) and then a few warm
steps; compile time = first step - median warm step. A second worker with the same
directory finds every kernel cached: its first step minus a warm step is the cost of
loading the cache.

*First batch*: ``python -m minicnn train --epochs 1 --train-limit B --batch-size B ...`` in a
subprocess; the time from starting it until the line ``[Epoch:    1] ...`` appears on its
stdout. With one batch per epoch, that line is printed right after the first batch, so the
time covers the interpreter's start, the imports, reading MNIST, building the model and
one training step: what a user waits before training is under way. Measured with the warm
cache (the issue's target: within 3 s), with the cold one, and for ``--engine torch``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.machine import ROOT

WARM_STEPS = 3


def worker(model_name: str, batch: int) -> dict:
    """Times of this process's import, first step and warm steps (see the docstring)."""
    start = time.perf_counter()
    import numpy as np

    import minicnn
    from minicnn import nn, optim
    from minicnn.models import MODELS

    import_s = time.perf_counter() - start
    minicnn.manual_seed(777)
    model = MODELS[model_name]().train()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=0.001)
    rng = np.random.default_rng(0)
    X = rng.random((batch, 1, 28, 28), dtype=np.float32)  # (B, 1, 28, 28)
    Y = rng.integers(0, 10, size=batch, dtype=np.int64)  # (B,)
    times = []
    for _ in range(1 + WARM_STEPS):
        begin = time.perf_counter()
        optimizer.zero_grad()
        cost = criterion(model(X), Y)  # (B, 10) logits → 0-d loss
        cost.backward()
        optimizer.step()
        times.append(time.perf_counter() - begin)
    warm = statistics.median(times[1:])
    return {
        "import_s": import_s,
        "first_step_s": times[0],
        "warm_step_s": warm,
        "compile_s": times[0] - warm,
    }


def _env(cache_dir: str) -> dict:
    return {**os.environ, "NUMBA_CACHE_DIR": cache_dir}


def _worker_run(model_name: str, batch: int, cache_dir: str, timeout: float) -> dict:
    command = [sys.executable, "-m", "benchmarks.jit", "--worker", model_name, str(batch)]
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"JIT worker for {model_name} failed:\n{done.stderr}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": wall}


def compile_times(model_name: str, cache_dir: str, batch: int = 100, timeout=900) -> dict:
    """A cold worker (``cache_dir`` must be empty) and then a warm one, for one model."""
    cold = _worker_run(model_name, batch, cache_dir, timeout)
    warm = _worker_run(model_name, batch, cache_dir, timeout)
    return {"model": model_name, "batch": batch, "cold": cold, "warm": warm}


def first_batch(
    model_name: str,
    engine: str,
    data_dir: str,
    cache_dir: str | None,
    batch: int = 100,
    timeout: float = 600,
) -> dict:
    """Seconds from starting ``minicnn train`` to its ``Training`` line and to the line
    printed after its first (and only) batch; ``cache_dir`` is ``NUMBA_CACHE_DIR``."""
    with tempfile.TemporaryDirectory(prefix="minicnn-bench-") as scratch:
        command = [
            sys.executable,
            "-m",
            "minicnn",
            "train",
            "--model",
            model_name,
            "--engine",
            engine,
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--batch-size",
            str(batch),
            "--train-limit",
            str(batch),
            "--test-limit",
            str(batch),
            "--data-dir",
            str(data_dir),
            "--no-download",
            "--progress",
            "none",
            "--metrics",
            os.path.join(scratch, "metrics.jsonl"),
        ]
        env = _env(cache_dir) if cache_dir else os.environ.copy()
        found: dict[str, float] = {}
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            for line in process.stdout:
                now = time.perf_counter() - start
                if line.startswith("Training") and "ready_s" not in found:
                    found["ready_s"] = now
                elif line.startswith("[Epoch:") and "first_batch_s" not in found:
                    found["first_batch_s"] = now
            _, errors = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
        total = time.perf_counter() - start
    if process.returncode != 0 or "first_batch_s" not in found:
        raise RuntimeError(f"minicnn train ({engine}) failed or printed no epoch line:\n{errors}")
    return {
        "model": model_name,
        "engine": engine,
        "batch": batch,
        **found,
        "process_s": total,
        "command": "python " + shlex.join(command[1:]),
    }


def measure_all(models, data_dir: str | None, batch: int = 100) -> dict:
    """Compile times for every model, then the first-batch times of ``minicnn train`` (the
    latter marked not measured when no MNIST directory is known)."""
    compile_records, first = [], []
    for model_name in models:
        with tempfile.TemporaryDirectory(prefix="minicnn-numba-cache-") as cache:
            print(f"  JIT: {model_name}, cold and warm cache", flush=True)
            compile_records.append(compile_times(model_name, cache, batch))
            if data_dir:
                print(f"  first batch: {model_name}", flush=True)
                first.append(
                    {**first_batch(model_name, "minicnn", data_dir, cache, batch), "cache": "warm"}
                )
                first.append(
                    {**first_batch(model_name, "torch", data_dir, None, batch), "cache": "n/a"}
                )
        if data_dir:
            with tempfile.TemporaryDirectory(prefix="minicnn-numba-cache-") as cold:
                first.append(
                    {**first_batch(model_name, "minicnn", data_dir, cold, batch), "cache": "cold"}
                )
    result = {"compile": compile_records, "first_batch": first}
    if not data_dir:
        result["first_batch_status"] = (
            "not measured: no MNIST (pass --data-dir or set MINICNN_DATA)"
        )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="JIT compile time, one worker per process")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "BATCH"), required=True)
    args = parser.parse_args(argv)
    print(json.dumps(worker(args.worker[0], int(args.worker[1]))))


if __name__ == "__main__":
    main()
