"""What a training run writes: checked before the first batch, listed when the run ends.

An earlier run's files are never replaced without a word. Before any data is read, a run
refuses (with the option that allows it) to start over an existing ``--save`` checkpoint
unless it resumes that checkpoint, and to replace an existing ``--metrics`` log or ``--plot``
unless it resumes or ``--overwrite`` is given. Without ``--save`` or ``--metrics`` the log goes
to ``runs/MODEL-ENGINE.jsonl``, or the first free ``runs/MODEL-ENGINE-2.jsonl``, ``-3``, ...
When the run ends, ``report`` prints every file it wrote.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from minicnn.train.config import TrainConfig, metrics_path


def check_outputs(config: TrainConfig) -> None:
    """ValueError, before any work, when a path the run writes is a directory, or its folder
    cannot be made or written; when the metrics log is the checkpoint; when ``--plot`` does not
    name a PNG file; or when the run would replace files of another run (see the module
    docstring). Makes the folders of the log and the checkpoint."""
    log = metrics_path(config)
    outputs = [("--metrics", log)]
    if config.save:
        save = Path(config.save)
        outputs.append(("--save", save))
        if log.resolve() == save.resolve():
            raise ValueError(
                f"--metrics {log}: the checkpoint --save writes; give the log another path"
            )
    for flag, path in outputs:
        if path.is_dir():
            raise ValueError(f"{flag} {path}: is a directory; expected a file name in it")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"{flag} {path}: cannot create its directory ({error})") from None
        if not os.access(path.parent, os.W_OK):
            raise ValueError(f"{flag} {path}: its directory {path.parent} is not writable")
    if config.plot is not None and Path(config.plot).suffix.lower() != ".png":
        raise ValueError(f"--plot {config.plot}: expected a file name ending in .png")
    if config.overwrite:
        return
    resumes = config.resume is not None
    if config.save is not None and Path(config.save).exists():
        same = resumes and Path(config.resume).resolve() == Path(config.save).resolve()
        if not same:
            raise ValueError(
                f"--save {config.save}: that checkpoint exists already; continue its run with "
                f"--resume {config.save}, save elsewhere, or pass --overwrite to replace it"
            )
    given = {"--metrics": config.metrics, "--plot": config.plot}
    for flag, path in given.items():
        if path is not None and Path(path).exists() and not resumes:
            raise ValueError(
                f"{flag} {path}: that file exists already (another run's); name another one "
                "or pass --overwrite to replace it"
            )


def metrics_log(config: TrainConfig) -> Path:
    """The JSON-lines file this run logs to: ``metrics_path(config)``, except that the default
    ``runs/MODEL-ENGINE.jsonl`` is numbered rather than replaced when it exists."""
    path = metrics_path(config)
    if config.metrics or config.save or config.overwrite or not path.exists():
        return path
    numbered = (path.with_name(f"{path.stem}-{n}{path.suffix}") for n in itertools.count(2))
    return next(candidate for candidate in numbered if not candidate.exists())


def report(files: list[Path]) -> None:
    """Print each file the run wrote, one a line."""
    for file in files:
        print(f"Wrote {file}", flush=True)
