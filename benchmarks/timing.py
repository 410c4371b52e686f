"""Side-by-side timing: every engine of a configuration measured in turns, medians reported.

The machine is shared and noisy, so absolute times drift from minute to minute. What stays
meaningful is a ratio measured at one moment: ``measure`` warms every runner up (the JIT
compiles outside the timing), picks for each a number of steps that takes about
``target_s``, then takes ``repeats`` samples, one per engine in turn, rotating the order
each round so no engine always runs first. Each sample is ``time.perf_counter`` around a
block of steps (with a GPU synchronisation on both sides for CUDA), divided by the steps,
after one untimed step of the same engine: the switch from the other engine (its weights
and buffers evicted from the caches, torch's OpenMP threads still spinning) is a cost of
taking turns, not of either engine's steady state (measured in one process, CNN training at
batch 100: minicnn ~18 ms a step right after torch's turn, ~15 ms alone or after an
untimed step; torch ~26.6 and ~24).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence

from benchmarks.machine import cpu_times, others_cores

MAX_STEPS = 1000  # steps in one sample, at most


def summarize(per_step: Sequence[float], batch: int) -> dict:
    """Median seconds per step, images/s at the median and at the fastest sample, and the
    spread of the samples (the interquartile range over the median: 0.05 means the middle
    half lay within 5%)."""
    median = statistics.median(per_step)
    if len(per_step) >= 4:
        q1, _, q3 = statistics.quantiles(per_step, n=4)
        spread = (q3 - q1) / median
    else:
        spread = (max(per_step) - min(per_step)) / median
    return {
        "step_s": median,
        "images_per_s": batch / median,
        "best_images_per_s": batch / min(per_step),
        "spread": spread,
        "samples_s": list(per_step),
    }


def steps_for(seconds_per_step: float, target_s: float) -> int:
    """How many steps make a sample of about ``target_s`` seconds."""
    return max(1, min(MAX_STEPS, round(target_s / max(seconds_per_step, 1e-9))))


def measure(
    runners: Sequence, mode: str, *, repeats: int, target_s: float, warmup: int = 2
) -> dict[str, dict]:
    """Time ``mode`` ("train" or "infer") on every runner, interleaved; results by engine.

    Each result is ``summarize``'s dict plus ``steps_per_sample``, ``batch``, ``load`` (the
    1-minute load average after the samples) and ``others_cores``: the CPUs' worth of time
    other processes used while the samples ran. When that is not near 0 the engines competed
    for the cores, and engines whose OpenMP threads wait for each other at every parallel
    region (torch) suffer far more than others.
    """
    if repeats < 1 or warmup < 1:
        raise ValueError(f"measure: repeats and warmup must be >= 1, got {repeats}, {warmup}")
    for runner in runners:
        runner.run(mode, warmup)  # JIT compilation, allocator and library warm-up
    steps = {}
    for runner in runners:  # calibrate on the faster of two single steps
        one = min(runner.run(mode, 1), runner.run(mode, 1))
        steps[runner.engine] = steps_for(one, target_s)
    samples: dict[str, list[float]] = {runner.engine: [] for runner in runners}
    before = cpu_times()
    for round_ in range(repeats):
        shift = round_ % len(runners)
        for runner in [*runners[shift:], *runners[:shift]]:
            n = steps[runner.engine]
            runner.run(mode, 1)  # untimed: the switch from the other engine
            samples[runner.engine].append(runner.run(mode, n) / n)
    others = others_cores(before, cpu_times())
    return {
        runner.engine: {
            **summarize(samples[runner.engine], runner.batch),
            "steps_per_sample": steps[runner.engine],
            "batch": runner.batch,
            "load": load_average(),
            "others_cores": others,
        }
        for runner in runners
    }


def load_average() -> float | None:
    """The 1-minute load average, or None where the system does not report one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or not a positive number."""
    if numerator is None or denominator is None:
        return None
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return None
    return numerator / denominator
