"""What a benchmark ran on: CPU, cores, library versions, thread settings, date, commit.

Stored with every result file: numbers from two machines (or two commits) are not
comparable, and the record says which they came from.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository root
ENV_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "NUMBA_", "MINICNN_", "CUDA_VISIBLE")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_details() -> dict:
    """Family, model and the widest SIMD extension listed in /proc/cpuinfo (a virtual
    machine may report only "AMD EPYC" as the name)."""
    found: dict = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key in ("cpu family", "model") and key not in found:
                    found[key] = value
                elif key == "flags":
                    flags = set(value.split())
                    found["simd"] = next(
                        (f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), None
                    )
                    break
    except OSError:
        pass
    return found


def cores() -> dict:
    """Logical CPUs in the machine and those this process may run on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {"logical": os.cpu_count(), "usable": usable}


def cpu_times() -> tuple[float, float, float] | None:
    """CPU seconds so far: (busy, total) over the machine's CPUs from /proc/stat, and this
    process's own (all its threads) from /proc/self/stat; None where /proc is missing."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
        with open("/proc/self/stat") as own_stat:
            text = own_stat.read()
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal: steal is time the hypervisor gave away
    total, idle = sum(values), values[3] + values[4]
    fields = text[text.rindex(")") + 2 :].split()  # fields 3, 4, ... of proc(5)
    own = int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick, own / tick


def others_cores(before, after) -> float | None:
    """How many CPUs' worth of time other processes (and the hypervisor, as steal) used
    between two ``cpu_times()`` readings: 0 on a quiet machine, 1.0 if one core was taken."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    busy, total, own = (a - b for a, b in zip(after, before))
    return max(0.0, (busy - own) / total * (os.cpu_count() or 1))


def git_commit() -> str:
    """The checked-out commit, with ``+dirty`` when the tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            text=True,
            capture_output=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def versions() -> dict:
    import numba
    import numpy

    found = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
    }
    try:
        import torch

        found["torch"] = torch.__version__
        found["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    except ImportError:
        found["torch"] = None
    return found


def threads() -> dict:
    """Thread counts as they stand now: Numba's, its threading layer, torch's."""
    import numba

    found = {
        "numba": numba.get_num_threads(),
        "numba_max": numba.config.NUMBA_NUM_THREADS,
        "numba_layer": str(numba.config.THREADING_LAYER),
    }
    try:
        import torch

        found["torch"] = torch.get_num_threads()
        found["torch_interop"] = torch.get_num_interop_threads()
    except ImportError:
        pass
    return found


def gpu() -> str | None:
    """The CUDA device's name, or None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def describe() -> dict:
    """Everything above, plus the date (UTC), the load average and the relevant environment."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": cpu_model(),
        "cpu_details": cpu_details(),
        "cores": cores(),
        "gpu": gpu(),
        "platform": platform.platform(),
        "versions": versions(),
        "threads": threads(),
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        "load_average": load,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
    }


def one_line(machine: dict) -> str:
    """``describe()``'s record as one line for a Markdown header."""
    v = machine["versions"]
    details = machine.get("cpu_details", {})
    text = machine["cpu"]
    if details.get("cpu family"):
        text += f" (family {details['cpu family']}, model {details.get('model')})"
    if details.get("simd"):
        text += f" with {details['simd']}"
    text += f", {machine['cores']['usable']} usable cores"
    if machine.get("gpu"):
        text += f", {machine['gpu']}"
    text += f"; Python {v['python']}, NumPy {v['numpy']}, Numba {v['numba']}"
    if v.get("torch"):
        text += f", torch {v['torch']}"
    return text
