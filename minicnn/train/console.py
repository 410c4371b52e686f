"""The run's surroundings: the progress bar, Ctrl-C handling, and the plot."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


class ProgressBar:
    """A tqdm bar over one epoch's batches on stderr (``leave=False``), or nothing at all."""

    def __init__(self, bar=None) -> None:
        self.bar = bar

    def update(self, cost: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(cost=f"{cost:.4f}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_bar(mode: str, total: int, initial: int, desc: str) -> ProgressBar:
    """``mode`` ``"bar"``: a tqdm bar; ``"none"``: nothing; ``"auto"``: a bar when stderr is a
    terminal and tqdm is installed, so logs and pipes get plain lines only."""
    if mode == "none" or (mode == "auto" and not sys.stderr.isatty()):
        return ProgressBar()
    try:
        from tqdm import tqdm
    except ImportError:
        if mode == "bar":
            raise ValueError("--progress bar needs tqdm: pip install tqdm") from None
        return ProgressBar()
    return ProgressBar(
        tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="batch",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
    )


class StopOnSigint:
    """While active, the first Ctrl-C (SIGINT) only sets ``requested``, so the loop can stop at
    a batch boundary and save; a second one raises ``KeyboardInterrupt`` at once.

    Signal handlers can only be set in the main thread; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous = None

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nCtrl-C: finishing the current batch, then saving a checkpoint "
            "(Ctrl-C again to abort at once)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc_info) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._installed = False


def save_plot(
    path: str | Path, records: list[dict], accuracy: float, deck_accuracy: float | None = None
) -> Path:
    """A PNG: the average cost per epoch (left) and the test accuracy (right, with the deck's
    raw-pixel evaluation beside it when given). matplotlib is imported here, and only its Agg
    canvas is used, so no window opens and pyplot's global backend is left alone."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install matplotlib") from None
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    cost_axes, accuracy_axes = figure.subplots(1, 2)
    cost_axes.plot([r["epoch"] for r in records], [r["cost"] for r in records], marker="o")
    cost_axes.set(title="Training cost", xlabel="epoch", ylabel="average cross-entropy")
    cost_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    names, values = ["test (0-1 inputs)"], [accuracy]
    if deck_accuracy is not None:
        names, values = [*names, "deck's eval (0-255)"], [*values, deck_accuracy]
    bars = accuracy_axes.bar(names, values, color=["tab:blue", "tab:orange"][: len(values)])
    accuracy_axes.bar_label(bars, fmt="%.4f")
    accuracy_axes.set(title="Test accuracy", xlabel="evaluation", ylabel="accuracy", ylim=(0, 1.05))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
