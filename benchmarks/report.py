"""A benchmark record (``benchmarks.suite``'s JSON) as Markdown: header, targets, throughput
(the other tables are in ``benchmarks.tables``, the chart in ``benchmarks.chart``)."""

from __future__ import annotations

from benchmarks.engines import ENGINES, MODES
from benchmarks.machine import one_line
from benchmarks.tables import (
    jit_tables,
    layer_tables,
    memory_table,
    number,
    scaling_table,
    times,
    validation_table,
)
from benchmarks.targets import HEADLINE_BATCH, MODEL_TITLES, round_ratios, speeds

BUSY_CORES = 0.25  # other processes' CPU use above which a configuration is flagged
MODE_TITLES = {
    "train": "Training step (zero_grad, forward, loss, backward, Adam)",
    "infer": "Inference (eval mode, no grad)",
}


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
    busy = sorted(
        {
            (r["model"], r["mode"], r["batch"])
            for r in rows
            if (r.get("others_cores") or 0) > BUSY_CORES
        }
    )
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
                    cells.append(number(row["images_per_s"]))
            numba, torch = speed.get("minicnn-numba"), speed.get("torch-cpu")
            ratio = times(numba / torch if numba and torch else None)
            rounds = round_ratios(record, (model, mode, batch), "minicnn-numba", "torch-cpu")
            if len(rounds) > 1:
                ratio += f" ({min(rounds):.2f}–{max(rounds):.2f})"
            spreads = [
                status[(model, mode, batch, e)].get("spread")
                for e in engines
                if (model, mode, batch, e) in status
            ]
            noise = max((s for s in spreads if s is not None), default=None)
            used = [
                row.get("others_cores")
                for k, row in status.items()
                if k[:3] == (model, mode, batch)
            ]
            others = max((u for u in used if u is not None), default=None)
            busy = " (busy)" if others is not None and others > BUSY_CORES else ""
            bold = "**" if batch == HEADLINE_BATCH else ""
            lines.append(
                f"| {MODEL_TITLES[model]} | {bold}{batch}{bold} | "
                + " | ".join(cells)
                + f" | {bold}{ratio}{bold} | {number(noise and noise * 100, 0, '%')} | "
                + f"{number(others, 2)}{busy} |"
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
