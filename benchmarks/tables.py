"""The report's tables after the throughput: validation, per-layer times, thread scaling,
memory and JIT (``benchmarks.report`` assembles them)."""

from __future__ import annotations

from benchmarks.targets import MODEL_TITLES


def number(value, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def times(value) -> str:
    return "—" if value is None else f"{value:.2f}×"


def validation_table(record: dict) -> list[str]:
    found = record.get("validation")
    lines = ["## Validation against torch-cpu (before any timing)", ""]
    if not isinstance(found, dict) or found.get("status") == "skipped":
        return [*lines, "Skipped.", ""]
    lines += [
        "| model | engine | largest relative error | in | tolerance |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    for model, by_engine in found.items():
        for engine, result in by_engine.items():
            lines.append(
                f"| {MODEL_TITLES[model]} | {engine} | {result['max_error']:.2e} | "
                f"{result['worst']} | {result['tolerance']:g} |"
            )
    return [
        *lines,
        "",
        "Logits, loss and every gradient of one eval-mode pass on 8 images, "
        "the weights copied with `reference.convert`.",
        "",
    ]


def layer_tables(record: dict) -> list[str]:
    found = record.get("layers")
    lines = ["## Per-layer times", ""]
    if not isinstance(found, dict) or found.get("status") == "skipped":
        return [*lines, "Skipped.", ""]
    for model, entry in found.items():
        mini, torch = entry["engines"]["minicnn-numba"], entry["engines"]["torch-cpu"]
        lines += [
            f"### {MODEL_TITLES[model]}, batch {entry['batch']} (ms; GFLOP/s)",
            "",
            "| layer | forward minicnn | forward torch | backward minicnn | backward "
            "torch | GFLOP/s fwd minicnn / torch | GFLOP/s bwd minicnn / torch |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for a, b in zip(mini["rows"], torch["rows"]):
            name = f"{a['name']} ({a['kind']})" if a["kind"] else a["name"]
            gf = f"{number(a.get('forward_gflops'), 1)} / {number(b.get('forward_gflops'), 1)}"
            gb = f"{number(a.get('backward_gflops'), 1)} / {number(b.get('backward_gflops'), 1)}"
            if not a.get("forward_macs"):
                gf = gb = ""
            lines.append(
                f"| {name} | {number(a['forward_s'] * 1e3, 2)} | "
                f"{number(b['forward_s'] * 1e3, 2)} | {number(a['backward_s'] * 1e3, 2)} | "
                f"{number(b['backward_s'] * 1e3, 2)} | {gf} | {gb} |"
            )
        lines += [
            f"| other | {number(mini['other_s'] * 1e3, 2)} | | | "
            f"{number(torch['other_s'] * 1e3, 2)} | | |",
            f"| **step** | **{number(mini['step_s'] * 1e3, 2)}** | | | "
            f"**{number(torch['step_s'] * 1e3, 2)}** | | |",
            "",
        ]
    return [
        *lines,
        "*other*: the step minus the rows (Python, reshapes, autograd bookkeeping), "
        "the median over steps. The step is timed with the per-layer timers in place. "
        "GFLOP/s count the work needed (no input gradient for the first layer).",
        "",
    ]


def scaling_table(record: dict) -> list[str]:
    rows = record.get("scaling")
    lines = ["## Thread scaling (training images/s)", ""]
    if not isinstance(rows, list):
        return [*lines, "Skipped.", ""]
    lines += [
        "| model | batch | threads | minicnn-numba | torch-cpu | numba ÷ torch-cpu | others |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    keyed = {(r["model"], r["batch"], r["thread_count"], r["engine"]): r for r in rows}
    for model, batch, count in sorted(
        {k[:3] for k in keyed}, key=lambda k: (list(MODEL_TITLES).index(k[0]), k[1], k[2])
    ):
        a = keyed.get((model, batch, count, "minicnn-numba"), {}).get("images_per_s")
        b = keyed.get((model, batch, count, "torch-cpu"), {}).get("images_per_s")
        others = keyed.get((model, batch, count, "torch-cpu"), {}).get("others_cores")
        lines.append(
            f"| {MODEL_TITLES[model]} | {batch} | {count} | {number(a)} | {number(b)} | "
            f"{times(a / b if a and b else None)} | {number(others, 2)} |"
        )
    return [*lines, ""]


def memory_table(record: dict) -> list[str]:
    rows = record.get("memory")
    lines = ["## Memory while training (one fresh process each)", ""]
    if not isinstance(rows, list):
        return [*lines, "Skipped.", ""]
    lines += [
        "| model | batch | engine | peak RSS (MiB) | after imports (MiB) | peak − after "
        "imports (MiB) | per image (KiB) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {MODEL_TITLES[r['model']]} | {r['batch']} | {r['engine']} | "
            f"{r['peak_rss_mib']:.0f} | {r['baseline_mib']:.0f} | "
            f"{r['training_mib']:.0f} | {r['per_image_kib']:.0f} |"
        )
    return [
        *lines,
        "",
        "*per image*: the peak of the timed steps minus the RSS after a "
        "warm-up step at batch 1, over the batch size (see `benchmarks/peak.py`).",
        "",
    ]


def jit_tables(record: dict) -> list[str]:
    found = record.get("jit")
    lines = ["## JIT compilation and the first batch", ""]
    if not isinstance(found, dict) or found.get("status") == "skipped":
        return [*lines, "Skipped.", ""]
    lines += [
        "| model | import minicnn (s) | first step, cold cache (s) | first step, warm "
        "cache (s) | warm step (s) | compile (s) | cache load (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in found["compile"]:
        cold, warm = c["cold"], c["warm"]
        lines.append(
            f"| {MODEL_TITLES[c['model']]} | {warm['import_s']:.2f} | "
            f"{cold['first_step_s']:.2f} | {warm['first_step_s']:.2f} | "
            f"{warm['warm_step_s']:.3f} | {cold['compile_s']:.2f} | "
            f"{warm['compile_s']:.2f} |"
        )
    lines += [
        "",
        "`minicnn train --epochs 1 --train-limit 100 --batch-size 100`: seconds from "
        "starting the process to its `Training` line and to the line printed after the "
        "first (and only) batch.",
        "",
        "| model | engine | JIT cache | to `Training` line (s) | first batch done (s) |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for f in found["first_batch"]:
        lines.append(
            f"| {MODEL_TITLES[f['model']]} | {f['engine']} | {f['cache']} | "
            f"{f['ready_s']:.2f} | {f['first_batch_s']:.2f} |"
        )
    if found.get("first_batch_status"):
        lines.append(f"\n{found['first_batch_status']}")
    return [*lines, ""]
