"""CPU against GPU: torch on CUDA next to torch and minicnn on the CPU, on one machine.

Records training-step and inference images/s for both models at batch 100 and 256 on
torch-cuda, with the whole dataset resident in GPU memory: each training step gathers its
batch from it with a shuffled index that also lives on the GPU, as ``minicnn train --engine
torch`` does, so no step copies from the host. Inference runs over consecutive slices. The
data are MNIST's 60,000 training images with ``--data-dir`` (or ``$MINICNN_DATA``), else as
many random images of MNIST's shape; the output says which. On the same machine and in the
same interleaved rounds it times torch-cpu and minicnn-numba (``--no-cpu`` skips them), so
the table compares engines that shared the machine's conditions.

Before timing, torch-cuda's logits and gradients are checked against torch-cpu's to 1e-4
with TF32 off (``benchmarks.validate`` says why); the timings use torch's defaults, under
which cuDNN may convolve in TF32 (the JSON records the flags). On a machine without
CUDA the CUDA rows read "not measured" and the script still exits 0. It finishes in well
under 5 minutes (most of it the first Numba compilation on a fresh machine). Run from the
repository root:

    python -m benchmarks.gpu --data-dir minicnn/data/mnist_files  # writes benchmarks/reports/gpu.*
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import engines as E
from benchmarks import machine, timing, validate
from benchmarks.report import BUSY_CORES
from benchmarks.targets import MODEL_TITLES

DATASET = 60000  # MNIST's training images


class ResidentRunner(E.TorchRunner):
    """A torch runner holding the whole dataset on its device and a shuffled index there."""

    def __init__(self, engine: str, model: str, batch: int, data: E.Data) -> None:
        super().__init__(
            engine, model, batch, E.Data(data.images[:batch], data.labels[:batch], data.source)
        )
        torch = self._torch
        self.x = torch.from_numpy(data.images).to(self.device)  # (M, 1, 28, 28)
        self.y = torch.from_numpy(data.labels).to(self.device)  # (M,)
        generator = torch.Generator(device=self.device).manual_seed(E.SEED)
        self.order = torch.randperm(len(self.x), device=self.device, generator=generator)
        self.count = len(self.x) // batch

    def _next(self):
        self.position = (self.position + 1) % self.count
        rows = self.order[self.position * self.batch : (self.position + 1) * self.batch]  # (B,)
        return self.x[rows], self.y[rows]  # (B, 1, 28, 28), (B,)

    def infer(self) -> None:
        self.position = (self.position + 1) % self.count
        start = self.position * self.batch
        self.model(self.x[start : start + self.batch])  # (B, 10)


def measure(args, data: E.Data) -> list[dict]:
    """One row per (model, mode, batch, engine), engines interleaved per configuration."""
    engines = ["torch-cuda"] + ([] if args.no_cpu else ["torch-cpu", "minicnn-numba"])
    rows = []
    for model in args.models:
        for batch in args.batches:
            runnable = [e for e in engines if E.available(e)[0]]
            runners = [
                ResidentRunner(e, model, batch, data)
                if e == "torch-cuda"
                else E.make_runner(e, model, batch, data)
                for e in runnable
            ]
            for mode in E.MODES:
                print(f"  {model} {mode} batch {batch}: {', '.join(runnable)}", flush=True)
                found = timing.measure(
                    runners, mode, repeats=args.repeats, target_s=args.target_seconds
                )
                for engine in engines:
                    row = {"model": model, "mode": mode, "batch": batch, "engine": engine}
                    if engine in found:
                        rows.append({**row, "status": "measured", **found[engine]})
                    else:
                        rows.append({**row, "status": E.available(engine)[1]})
    return rows


def markdown(record: dict) -> str:
    engines = list(dict.fromkeys(r["engine"] for r in record["rows"]))
    lines = [
        "# CPU against GPU",
        "",
        f"Machine: {machine.one_line(record['machine'])}. "
        f"{record['machine']['date']}, commit {record['machine']['commit']}.",
        "",
        f"Command: `{record['command']}`. Data: {record['data']}, resident on the GPU for "
        f"torch-cuda. torch-cpu on {record['threads']['torch']} threads, minicnn's Numba "
        f"kernels on {record['threads']['minicnn_numba']} (BLAS on 1). Medians of "
        f"{record['repeats']} interleaved samples; images/s.",
        "",
        "| model | mode | batch | " + " | ".join(engines) + " | cuda ÷ torch-cpu | "
        "cuda ÷ minicnn-numba | others |",
        "| --- | --- | ---: |" + " ---: |" * (len(engines) + 3),
    ]
    keyed = {(r["model"], r["mode"], r["batch"], r["engine"]): r for r in record["rows"]}
    for model, mode, batch in dict.fromkeys(k[:3] for k in keyed):
        speed = {e: keyed[(model, mode, batch, e)].get("images_per_s") for e in engines}
        cells = [f"{v:,.0f}" if v else "not measured" for v in speed.values()]
        ratios = [
            timing.ratio(speed.get("torch-cuda"), speed.get(other))
            for other in ("torch-cpu", "minicnn-numba")
        ]
        ratio_cells = ["—" if r is None else f"{r:.1f}×" for r in ratios]
        used = [keyed[(model, mode, batch, e)].get("others_cores") for e in engines]
        others = max((u for u in used if u is not None), default=None)
        busy = (
            "—" if others is None else f"{others:.2f}" + (" (busy)" if others > BUSY_CORES else "")
        )
        lines.append(
            f"| {MODEL_TITLES[model]} | {mode} | {batch} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(ratio_cells)
            + f" | {busy} |"
        )
    if record.get("cuda_status"):
        lines += ["", record["cuda_status"] + "."]
    if record.get("cudnn"):
        lines += [
            "",
            "torch-cuda's logits and gradients agreed with torch-cpu's to 1e-4 with TF32 off "
            "before anything was timed; the timings use torch's defaults (cuDNN TF32 "
            f"{'allowed' if record['cudnn']['allow_tf32'] else 'off'}, cudnn.benchmark "
            f"{record['cudnn']['benchmark']}).",
        ]
    others = [r["others_cores"] for r in record["rows"] if r.get("others_cores") is not None]
    if others:
        lines += [
            "",
            f"*others*: CPUs' worth of time other processes used while a row was measured. "
            f"Other processes used {min(others):.2f} to {max(others):.2f} CPUs while "
            "this was measured.",
        ]
        if max(others) > BUSY_CORES:
            lines[-1] += (
                " **The CPU numbers of the rows marked busy are not to be quoted**: torch-cpu's "
                "OpenMP threads wait for each other when a core is taken (rerun with "
                "--wait-quiet)."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="MNIST directory (default: $MINICNN_DATA, else random data of MNIST's shape)",
    )
    parser.add_argument("--out", default="benchmarks/reports")
    parser.add_argument("--name", default="gpu", help="file name stem (default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=["cnn", "deep"], choices=MODEL_TITLES)
    parser.add_argument("--batches", nargs="+", type=int, default=[100, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-seconds", type=float, default=0.3)
    parser.add_argument("--images", type=int, default=DATASET, help="dataset size")
    parser.add_argument("--no-cpu", action="store_true", help="time torch-cuda only")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="MINUTES",
        help="first wait up to MINUTES until other processes use under 0.2 CPUs",
    )
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv

    import numba
    import torch

    from benchmarks.speed import set_threads
    from benchmarks.suite import wait_quiet

    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet * 60)
    started = time.perf_counter()
    threads = set_threads(min(machine.cores()["usable"], numba.config.NUMBA_NUM_THREADS), None)
    data = E.load_data(args.data_dir, max(args.images, max(args.batches)))
    cuda_ok, cuda_status = E.available("torch-cuda")
    print(f"CPU against GPU: {machine.one_line(machine.describe())}\n  data: {data.source}")
    if not cuda_ok:
        print(f"  torch-cuda: {cuda_status}")
    engines = ["torch-cuda"] + ([] if args.no_cpu else ["minicnn-numba"])
    try:
        checked = validate.validate(args.models, engines, data.images[:8], data.labels[:8])
    except validate.ValidationError as error:
        print(f"benchmarks.gpu: validation failed, nothing timed: {error}", file=sys.stderr)
        return 1
    record = {
        "schema": "minicnn-bench-gpu/1",
        "command": "python -m benchmarks.gpu " + " ".join(argv),
        "machine": machine.describe(),
        "data": data.source,
        "repeats": args.repeats,
        "threads": threads,
        "cuda_status": cuda_status,
        "validation": checked,
        "rows": measure(args, data),
    }
    if cuda_ok:
        record["cudnn"] = {
            "benchmark": torch.backends.cudnn.benchmark,
            "allow_tf32": torch.backends.cudnn.allow_tf32,
        }
    record["elapsed_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / f"{args.name}.md").write_text(markdown(record))
    print(markdown(record))
    print(f"wrote {out / args.name}.json, .md in {record['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
