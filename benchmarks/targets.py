"""The ratios a run is judged by, and the targets of the issue ("Fast: Numba kernels that beat
PyTorch on the CPU").

A ratio is minicnn-numba's images/s over torch-cpu's, both measured in the same run,
interleaved: above 1 minicnn is faster. The targets, all at batch 100 (the deck's):

    CNN training      >= 2.0x torch-cpu        DeepCNN training   >= 1.5x
    CNN inference     >= 2.0x                  DeepCNN inference  >= 2.0x
    peak RSS while training the CNN: minicnn's <= torch's
    ``minicnn train`` reaches the end of its first batch within 3 s with a warm JIT cache
"""

from __future__ import annotations

import statistics

from benchmarks.timing import ratio

HEADLINE_BATCH = 100
SPEED_TARGETS = [
    ("cnn", "train", 2.0),
    ("deep", "train", 1.5),
    ("cnn", "infer", 2.0),
    ("deep", "infer", 2.0),
]
FIRST_BATCH_TARGET_S = 3.0
MODEL_TITLES = {"cnn": "CNN", "deep": "DeepCNN"}


def speeds(record: dict) -> dict[tuple[str, str, int], dict[str, float]]:
    """images/s by (model, mode, batch) and engine, for the rows that were measured."""
    table: dict[tuple[str, str, int], dict[str, float]] = {}
    rows = record.get("throughput")
    for row in rows if isinstance(rows, list) else []:
        if row["status"] == "measured":
            key = (row["model"], row["mode"], row["batch"])
            table.setdefault(key, {})[row["engine"]] = row["images_per_s"]
    return table


def round_ratios(record: dict, key: tuple[str, str, int], engine: str, other: str) -> list:
    """``engine``'s speed over ``other``'s in each round of samples (the two samples of a
    round were taken back to back, so a slow drift of the machine cancels out)."""
    rows = record.get("throughput")
    samples = {
        r["engine"]: r["samples_s"]
        for r in (rows if isinstance(rows, list) else [])
        if (r["model"], r["mode"], r["batch"]) == key and r["status"] == "measured"
    }
    if engine not in samples or other not in samples:
        return []
    return [b / a for a, b in zip(samples[engine], samples[other])]


def ratios(record: dict) -> list[dict]:
    """For every configuration: numba ÷ torch-cpu (of the medians, of the fastest samples,
    and the median of the per-round ratios with their range), torch-cuda ÷ torch-cpu, numba ÷
    numpy."""
    found = []
    rows = record.get("throughput")
    best = {
        (r["model"], r["mode"], r["batch"], r["engine"]): r.get("best_images_per_s")
        for r in (rows if isinstance(rows, list) else [])
        if r["status"] == "measured"
    }
    for (model, mode, batch), by_engine in speeds(record).items():
        numba = by_engine.get("minicnn-numba")
        rounds = round_ratios(record, (model, mode, batch), "minicnn-numba", "torch-cpu")
        found.append(
            {
                "model": model,
                "mode": mode,
                "batch": batch,
                "numba_over_torch_cpu": ratio(numba, by_engine.get("torch-cpu")),
                "numba_over_torch_cpu_best": ratio(
                    *(best.get((model, mode, batch, e)) for e in ("minicnn-numba", "torch-cpu"))
                ),
                "numba_over_torch_cpu_rounds": {
                    "median": statistics.median(rounds),
                    "min": min(rounds),
                    "max": max(rounds),
                }
                if rounds
                else None,
                "torch_cuda_over_torch_cpu": ratio(
                    by_engine.get("torch-cuda"), by_engine.get("torch-cpu")
                ),
                "numba_over_numpy": ratio(numba, by_engine.get("minicnn-numpy")),
            }
        )
    return found


def _target(name: str, value, target: str, met: bool | None, note: str = "") -> dict:
    return {"name": name, "value": value, "target": target, "met": met, "note": note}


def evaluate_targets(record: dict) -> list[dict]:
    """Each target with the measured value and whether it is met (None: not measured)."""
    found = []
    by_key = {(r["model"], r["mode"], r["batch"]): r for r in ratios(record)}
    for model, mode, goal in SPEED_TARGETS:
        measured = by_key.get((model, mode, HEADLINE_BATCH), {})
        value = measured.get("numba_over_torch_cpu")
        what = "training" if mode == "train" else "inference"
        note = ""
        if measured.get("numba_over_torch_cpu_rounds"):
            r = measured["numba_over_torch_cpu_rounds"]
            note = f"per round {r['min']:.2f} to {r['max']:.2f}"
            if measured.get("numba_over_torch_cpu_best"):
                note += f"; fastest samples {measured['numba_over_torch_cpu_best']:.2f}"
        found.append(
            _target(
                f"{MODEL_TITLES[model]} {what}, minicnn-numba ÷ torch-cpu at "
                f"batch {HEADLINE_BATCH}",
                value,
                f">= {goal:.1f}",
                None if value is None else value >= goal,
                note,
            )
        )

    memory = record.get("memory")
    peaks = {}
    for entry in memory if isinstance(memory, list) else []:
        if entry["model"] == "cnn" and entry["batch"] == HEADLINE_BATCH:
            peaks[entry["engine"]] = entry
    if len(peaks) == 2:
        mini, torch = peaks["minicnn-numba"], peaks["torch-cpu"]
        value = ratio(mini["peak_rss_mib"], torch["peak_rss_mib"])
        note = (
            f"{mini['peak_rss_mib']:.0f} MiB vs {torch['peak_rss_mib']:.0f} MiB; above the "
            f"post-import baseline {mini['training_mib']:.0f} vs "
            f"{torch['training_mib']:.0f} MiB"
        )
        found.append(
            _target(
                f"peak RSS training the CNN at batch {HEADLINE_BATCH}, minicnn ÷ torch",
                value,
                "<= 1.0",
                value <= 1.0,
                note,
            )
        )
    else:
        found.append(
            _target(
                "peak RSS training the CNN, minicnn ÷ torch", None, "<= 1.0", None, "not measured"
            )
        )

    jit = record.get("jit")
    firsts = jit.get("first_batch", []) if isinstance(jit, dict) else []
    warm = [f for f in firsts if f["engine"] == "minicnn" and f["cache"] == "warm"]
    for entry in warm:
        value = entry["first_batch_s"]
        found.append(
            _target(
                f"minicnn train --model {entry['model']}: first batch done, warm JIT cache (s)",
                value,
                f"<= {FIRST_BATCH_TARGET_S:.0f}",
                value <= FIRST_BATCH_TARGET_S,
            )
        )
    if not warm:
        found.append(
            _target(
                "minicnn train: first batch done, warm JIT cache (s)",
                None,
                f"<= {FIRST_BATCH_TARGET_S:.0f}",
                None,
                "not measured (needs MNIST and the JIT part)",
            )
        )
    return found
