"""Peak memory of training, each engine in a fresh process so that peaks do not mix.

A worker process (``python -m benchmarks.peak --worker ENGINE MODEL BATCH``) imports only
its own engine (minicnn without torch, or torch without minicnn) and then:

1. makes its data and reads VmRSS from /proc/self/status: the *baseline* after imports;
2. resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``), builds the
   model and Adam, runs one warm-up step at batch 1 (JIT code loaded from the cache, library
   workspaces set up) and reads VmRSS again: the *warm* level;
3. resets the peak again, runs ``steps`` training steps at the batch size, and reads VmHWM.

*peak RSS* is the larger of the two peaks: what ``top`` would show for the training process.
*training memory* is that peak minus the baseline (model, optimizer state, activations,
gradients, workspaces, JIT machinery). *per image* is the step's own working set, the peak of
step 3 minus the warm level, divided by the batch: it should stay flat as the batch grows.

Where /proc/self/clear_refs cannot be written (not Linux, or a restricted container), VmHWM
then includes the import phase, and the record says so (``hwm_reset: false``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.machine import ROOT

KIB = 1024


def status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _steps(engine: str, model_name: str, threads: int | None):
    """``engine``'s model (seeded, in training mode), loss, Adam, and its array converter."""
    if engine == "minicnn-numba":
        import minicnn
        from minicnn import nn, optim
        from minicnn.kernels.runtime.threads import set_num_threads
        from minicnn.models import MODELS

        if threads:
            set_num_threads(threads)
        minicnn.manual_seed(777)
        model = MODELS[model_name]().train()
        criterion = nn.CrossEntropyLoss()
        optimizer = optim.Adam(model.parameters(), lr=0.001)
        return model, criterion, optimizer, lambda a: a
    if engine == "torch-cpu":
        import torch

        from reference.models import MODELS

        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(777)
        model = MODELS[model_name]().train()
        criterion = torch.nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        return model, criterion, optimizer, torch.from_numpy
    raise ValueError(f"memory: engine must be minicnn-numba or torch-cpu, got {engine!r}")


def worker(engine: str, model_name: str, batch: int, steps: int, threads: int | None) -> dict:
    """Steps 1-3 of the module docstring in this process; the numbers in MiB."""
    import numpy as np

    if engine == "minicnn-numba":
        import minicnn  # noqa: F401  (the engine's imports belong to the baseline)
    else:
        import torch  # noqa: F401

        import reference.models  # noqa: F401
    rng = np.random.default_rng(0)
    X = rng.random((batch, 1, 28, 28), dtype=np.float32)  # (B, 1, 28, 28)
    Y = rng.integers(0, 10, size=batch, dtype=np.int64)  # (B,)
    baseline = status_kib("VmRSS")

    hwm_reset = reset_peak()
    model, criterion, optimizer, wrap = _steps(engine, model_name, threads)
    X, Y = wrap(X), wrap(Y)

    def step(x, y):
        optimizer.zero_grad()
        cost = criterion(model(x), y)
        cost.backward()
        optimizer.step()

    step(X[:1], Y[:1])
    warm, warm_peak = status_kib("VmRSS"), status_kib("VmHWM")
    reset_peak()
    for _ in range(steps):
        step(X, Y)
    peak = status_kib("VmHWM")
    return {
        "engine": engine,
        "model": model_name,
        "batch": batch,
        "steps": steps,
        "baseline_mib": baseline / KIB,
        "warm_mib": warm / KIB,
        "peak_rss_mib": max(peak, warm_peak) / KIB,
        "training_mib": (max(peak, warm_peak) - baseline) / KIB,
        "per_image_kib": (peak - warm) / batch,
        "hwm_reset": hwm_reset,
        "threads": threads,
    }


def measure(
    engine: str,
    model_name: str,
    batch: int,
    steps: int = 5,
    threads: int | None = None,
    timeout: float = 300,
) -> dict:
    """Run ``worker`` in a fresh Python process and return its record."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.peak",
        "--worker",
        engine,
        model_name,
        str(batch),
        "--steps",
        str(steps),
    ]
    if threads:
        command += ["--threads", str(threads)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory worker {engine} {model_name} {batch} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_all(models, batches, steps: int = 5, threads: dict | None = None) -> list[dict]:
    """``measure`` for minicnn-numba and torch-cpu, every model and batch, alternating;
    ``threads`` maps an engine to its thread count (None or absent: the engine's default)."""
    records = []
    for model_name in models:
        for batch in batches:
            for engine in ("minicnn-numba", "torch-cpu"):
                print(f"  memory: {model_name} {engine} batch {batch}", flush=True)
                records.append(
                    measure(engine, model_name, batch, steps, (threads or {}).get(engine))
                )
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="peak RSS of training, one engine per process")
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "MODEL", "BATCH"), required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    engine, model_name, batch = args.worker
    print(json.dumps(worker(engine, model_name, int(batch), args.steps, args.threads)))


if __name__ == "__main__":
    main()
