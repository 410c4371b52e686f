"""A benchmark record (``benchmarks.suite``'s JSON) as Markdown tables and a PNG chart."""

from __future__ import annotations

from benchmarks.engines import ENGINES, MODES
from benchmarks.machine import one_line
from benchmarks.targets import HEADLINE_BATCH, MODEL_TITLES, round_ratios, speeds

BUSY_CORES = 0.25  # other processes' CPU use above which a configuration is flagged
MODE_TITLES = {
    "train": "Training step (zero_grad, forward, loss, backward, Adam)",
    "infer": "Inference (eval mode, no grad)",
}


def _num(value, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def _ratio(value) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _met(met) -> str:
    return {True: "yes", False: "**no**", None: "not measured"}[met]


def header(record: dict) -> list[str]:
    m, s = record["machine"], record["settings"]
    t = s["threads"]
    return [
        "# minicnn against PyTorch: speed, memory, JIT",
        "",
        f"Machine: {one_line(m)}. Commit {m['commit']}, {m['date']}, load average "
        f"{m['load_average']} at the start.",
        "",
        f"Command: `{record['command']}` ({record.get('elapsed_s', 0) / 60:.1f} min). "
        f"Data: {record['data']}.",
        "",
        f"Threads: minicnn's Numba kernels on {t['minicnn_numba']}, BLAS on "
        f"{t['minicnn_blas']}; torch on {t['torch']}. Each number is the median of "
        f"{s['repeats']} samples of about {s['target_seconds']} s, the engines of a row "
        f"measured in turns (see `benchmarks/README.md`). Ratios are minicnn-numba's images/s "
        f"over torch-cpu's: above 1, minicnn is faster.",
        "",
        *load_note(record),
    ]


def load_note(record: dict) -> list[str]:
    """How much CPU other processes took during the timings, and a warning when it was
    enough to matter (``benchmarks.timing.measure`` records it per configuration)."""
    rows = record.get("throughput")
    rows = rows if isinstance(rows, list) else []
    others = [r["others_cores"] for r in rows if r.get("others_cores") is not None]
    if not others:
        return []
    busy = sorted({(r["model"], r["mode"], r["batch"]) for r in rows
                   if (r.get("others_cores") or 0) > BUSY_CORES})  # fmt: skip
    text = (
        f"Other processes used {min(others):.2f} to {max(others):.2f} CPUs while the "
        f"throughput was measured (column *others*)."
    )
    if busy:
        text += (
            f" **{len(busy)} of {len({(r['model'], r['mode'], r['batch']) for r in rows})} "
            f"configurations ran while others used more than {BUSY_CORES} CPUs**: torch's "
            "numbers can collapse then (its OpenMP threads wait for each other at every "
            "parallel region) while minicnn's fall less, so those ratios overstate minicnn. "
            "Rerun on a quiet machine (`--wait-quiet`) before quoting them."
        )
    return [text, ""]


def targets_table(record: dict) -> list[str]:
    lines = [
        "## Targets",
        "",
        "| target | measured | goal | met | note |",
        "| --- | ---: | --- | --- | --- |",
    ]
    for t in record.get("targets", []):
        value = "—" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"| {t['name']} | {value} | {t['target']} | {_met(t['met'])} | {t['note']} |")
    return [*lines, ""]


def throughput_tables(record: dict) -> list[str]:
    rows = record.get("throughput")
    if not isinstance(rows, list):
        return ["## Throughput", "", "Skipped.", ""]
    table = speeds(record)
    status = {(r["model"], r["mode"], r["batch"], r["engine"]): r for r in rows}
    engines = [e for e in ENGINES if any(r["engine"] == e for r in rows)]
    lines = ["## Throughput (images/s)", ""]
    for mode in MODES:
        lines += [
            f"### {MODE_TITLES[mode]}",
            "",
            "| model | batch | " + " | ".join(engines) + " | numba ÷ torch-cpu | noise | others |",
            "| --- | ---: | " + " | ".join("---:" for _ in engines) + " | ---: | ---: | ---: |",
        ]
        keys = sorted(
            {(r["model"], r["batch"]) for r in rows if r["mode"] == mode},
            key=lambda k: (list(MODEL_TITLES).index(k[0]), k[1]),
        )
        for model, batch in keys:
            speed = table.get((model, mode, batch), {})
            cells = []
            for engine in engines:
                row = status.get((model, mode, batch, engine))
                if row is None:
                    cells.append("—")
                elif row["status"] != "measured":
                    cells.append("not measured")
                else:
                    cells.append(_num(row["images_per_s"]))
            numba, torch = speed.get("minicnn-numba"), speed.get("torch-cpu")
            ratio = _ratio(numba / torch if numba and torch else None)
            rounds = round_ratios(record, (model, mode, batch), "minicnn-numba", "torch-cpu")
            if len(rounds) > 1:
                ratio += f" ({min(rounds):.2f}–{max(rounds):.2f})"
            spreads = [
                status[(model, mode, batch, e)].get("spread")
                for e in engines
                if (model, mode, batch, e) in status
            ]
            noise = max((s for s in spreads if s is not None), default=None)
            used = [row.get("others_cores") for k, row in status.items()
                    if k[:3] == (model, mode, batch)]  # fmt: skip
            others = max((u for u in used if u is not None), default=None)
            busy = " (busy)" if others is not None and others > BUSY_CORES else ""
            bold = "**" if batch == HEADLINE_BATCH else ""
            lines.append(
                f"| {MODEL_TITLES[model]} | {bold}{batch}{bold} | "
                + " | ".join(cells)
                + f" | {bold}{ratio}{bold} | {_num(noise and noise * 100, 0, '%')} | "
                + f"{_num(others, 2)}{busy} |"
            )
        lines.append("")
    lines += [
        "*noise*: the largest interquartile range of the row's samples, relative to its "
        "median. In brackets: the range of the ratio over the rounds (each round times the "
        "engines back to back). *others*: CPUs' worth of time other processes used while the "
        f"row was measured; *busy* above {BUSY_CORES}.",
        "",
    ]
    return lines


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
            gf = f"{_num(a.get('forward_gflops'), 1)} / {_num(b.get('forward_gflops'), 1)}"
            gb = f"{_num(a.get('backward_gflops'), 1)} / {_num(b.get('backward_gflops'), 1)}"
            if not a.get("forward_macs"):
                gf = gb = ""
            lines.append(
                f"| {name} | {_num(a['forward_s'] * 1e3, 2)} | "
                f"{_num(b['forward_s'] * 1e3, 2)} | {_num(a['backward_s'] * 1e3, 2)} | "
                f"{_num(b['backward_s'] * 1e3, 2)} | {gf} | {gb} |"
            )
        lines += [
            f"| other | {_num(mini['other_s'] * 1e3, 2)} | | | "
            f"{_num(torch['other_s'] * 1e3, 2)} | | |",
            f"| **step** | **{_num(mini['step_s'] * 1e3, 2)}** | | | "
            f"**{_num(torch['step_s'] * 1e3, 2)}** | | |",
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
            f"| {MODEL_TITLES[model]} | {batch} | {count} | {_num(a)} | {_num(b)} | "
            f"{_ratio(a / b if a and b else None)} | {_num(others, 2)} |"
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


def markdown(record: dict, chart_name: str | None = None) -> str:
    lines = header(record) + targets_table(record) + throughput_tables(record)
    if chart_name:
        lines += [f"![images/s by batch size]({chart_name})", ""]
    lines += validation_table(record) + layer_tables(record) + scaling_table(record)
    lines += memory_table(record) + jit_tables(record)
    return "\n".join(lines)


def summary(record: dict) -> str:
    """The targets as a few plain lines, for the terminal."""
    met = {True: "met", False: "NOT MET", None: "not measured"}
    return "\n".join(
        f"{met[t['met']]:>12}  {t['name']}: "
        f"{'—' if t['value'] is None else format(t['value'], '.2f')} "
        f"(goal {t['target']})"
        for t in record.get("targets", [])
    )
