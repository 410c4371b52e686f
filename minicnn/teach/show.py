"""Pictures of a trained model: its first-layer kernels, what each block makes of a test digit,
and the digit's predicted probabilities. ``minicnn show`` is a thin wrapper around
``show_checkpoint``.

Each picture is a PNG drawn on matplotlib's Agg canvas (no window opens, pyplot's global state
is left alone). matplotlib is an optional extra: ``pip install 'minicnn[plot]'``.

* ``kernels.png``: the first Conv2d's kernels side by side, one tile each, on one colour
  scale centred on 0 (red positive, blue negative), with a colour bar;
* ``features-<block>.png``: for every block of the model whose output is an image stack
  (the deck's ``layer1``, ``layer2``, ...), each channel of that output as a tile;
* ``prediction.png``: the digit, and the softmax probability of each class as a bar.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from minicnn import functional as F
from minicnn import nn
from minicnn.data import DATA_DIR_HELP, ensure_mnist, load_mnist, split_files, to_float
from minicnn.io.checkpoint import load_model
from minicnn.teach.trace import trace


@dataclasses.dataclass(frozen=True)
class Shown:
    """What ``show_checkpoint`` drew: the files, and the digit's label and prediction."""

    paths: list[Path]
    index: int
    label: int
    prediction: int
    probabilities: np.ndarray  # (10,) softmax of the logits


def _figure_class():
    """matplotlib's Figure, or a ValueError saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(
            "minicnn show needs matplotlib: pip install matplotlib (or 'minicnn[plot]')"
        ) from None
    return Figure


def show_checkpoint(
    path: str | os.PathLike,
    index: int = 0,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike = "runs/show",
    download: bool = True,
) -> Shown:
    """Draw the pictures of the module docstring for the checkpoint at ``path`` and test
    image number ``index`` into the directory ``out``."""
    Figure = _figure_class()  # before any work: a missing extra fails at once
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"show: expected the test image index as an int, got {index!r}")
    model = load_model(path)
    name = type(model).__name__
    found = ensure_mnist(data_dir, download, files=split_files(train=False))
    images, labels = load_mnist(found, train=False)  # the test split only
    if not 0 <= index < len(images):
        raise ValueError(
            f"show: --index {index} is not a test image: expected 0 to {len(images) - 1}"
        )
    dtype = next(model.parameters()).dtype
    x = to_float(images[index : index + 1], dtype=dtype)  # (1, 1, 28, 28) in [0, 1]
    traced = trace(model, x)
    probabilities = F.softmax(traced.output.astype(np.float64), dim=1)[0]  # (10,)
    prediction, label = int(probabilities.argmax()), int(labels[index])

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digit = f"test image #{index} (label {label})"
    conv = next((s for s in traced.layers if isinstance(s.module, nn.Conv2d)), None)
    paths = []
    if conv is not None:
        weight = conv.module.weight.data  # (C_out, C_in/groups, kH, kW)
        C_out, C_in, kH, kW = weight.shape
        channel = "" if C_in == 1 else ", input channel 0"
        title = f"{name}: the {C_out} learned {kH}×{kW} kernels of {conv.name} (Conv2d{channel})"
        paths.append(
            _tiles(
                Figure,
                weight[:, 0],
                title,
                "kernels",
                "weight",
                "RdBu_r",
                out / "kernels.png",
                centred=True,
            )
        )
    for block in traced.blocks:
        if block.output.ndim != 4:  # feature maps are image stacks; skip vectors
            continue
        C, H, W = block.output.shape[1:]
        inside = block.module
        parts = list(inside) if isinstance(inside, nn.Sequential) else [inside]
        steps = " → ".join(type(m).__name__ for m in parts)
        title = f"after {block.name} ({steps}): {C} feature maps of {H}×{W}\nfor {digit}"
        paths.append(
            _tiles(
                Figure,
                block.output[0],
                title,
                "channels",
                "activation",
                "viridis",
                out / f"features-{block.name}.png",
            )
        )
    paths.append(
        _prediction(Figure, images[index], probabilities, label, digit, out / "prediction.png")
    )
    return Shown(paths, index, label, prediction, probabilities)


def _montage(maps: np.ndarray, columns: int) -> np.ndarray:
    """``maps`` (C, h, w) as one (rows·(h+1) - 1, columns·(w+1) - 1) image with NaN gaps."""
    C, h, w = maps.shape
    rows = math.ceil(C / columns)
    grid = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan)
    for c in range(C):
        r, q = divmod(c, columns)
        grid[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = maps[c]
    return grid


def _tiles(
    Figure,
    maps: np.ndarray,
    title: str,
    what: str,
    unit: str,
    colours: str,
    path: Path,
    centred: bool = False,
) -> Path:
    """One PNG of the (C, h, w) ``maps`` as a grid of tiles on one colour scale: row r holds
    ``what`` r·columns to r·columns + columns - 1, labelled on the axes."""
    import matplotlib

    C, h, w = maps.shape
    columns = C if C <= 8 else 8 if C <= 64 else 16
    rows = math.ceil(C / columns)
    low, high = float(maps.min()), float(maps.max())
    if centred:
        high = max(abs(low), abs(high)) or 1.0
        low = -high
    figure = Figure(figsize=(1.0 + 0.75 * columns, 1.2 + 0.75 * rows), layout="constrained")
    axes = figure.subplots()
    cmap = matplotlib.colormaps[colours].with_extremes(bad="white")
    image = axes.imshow(
        _montage(maps.astype(np.float64), columns),
        cmap=cmap,
        vmin=low,
        vmax=high,
        interpolation="nearest",
    )
    axes.set_xticks(
        [q * (w + 1) + (w - 1) / 2 for q in range(columns)], [f"+{q}" for q in range(columns)]
    )
    spans = [f"{r * columns}–{min(C, (r + 1) * columns) - 1}" for r in range(rows)]
    axes.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(rows)], spans)
    axes.tick_params(length=0)
    axes.set(xlabel="+ place in the row", ylabel=what)
    figure.suptitle(title)  # over the colour bar too: long titles fit
    for side in axes.spines.values():
        side.set_visible(False)
    figure.colorbar(image, ax=axes, label=unit, shrink=0.9)
    figure.savefig(path, dpi=100)
    return path


def _prediction(
    Figure, image: np.ndarray, probabilities: np.ndarray, label: int, digit: str, path: Path
) -> Path:
    """The digit beside a bar chart of the softmax probability of each class."""
    prediction = int(probabilities.argmax())
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    picture, bars_axes = figure.subplots(1, 2, width_ratios=[1, 2])
    picture.imshow(image, cmap="gray_r", interpolation="nearest")
    picture.set(title=digit, xlabel="column (pixel)", ylabel="row (pixel)")
    colours = ["tab:blue"] * len(probabilities)
    colours[prediction] = "tab:orange" if prediction == label else "tab:red"
    bars = bars_axes.bar(range(len(probabilities)), probabilities, color=colours)
    bars_axes.bar_label(
        bars, labels=[f"{p:.3f}" if p >= 0.001 else "" for p in probabilities], fontsize=8
    )
    verdict = "correct" if prediction == label else f"wrong: the label is {label}"
    bars_axes.set(
        title=f"prediction: {prediction} (p = {probabilities[prediction]:.3f}), {verdict}",
        xlabel="class (digit)",
        ylabel="softmax probability",
        ylim=(0, 1.08),
        xticks=range(len(probabilities)),
    )
    figure.savefig(path, dpi=100)
    return path


# -- the command line: minicnn show ---------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``minicnn show``'s options."""
    parser.add_argument(
        "path", nargs="?", metavar="PATH", help="a checkpoint written by minicnn train --save"
    )
    parser.add_argument(
        "--checkpoint", metavar="PATH", help="the same as PATH (the older spelling)"
    )
    parser.add_argument(
        "--index",
        type=int,
        default=0,
        metavar="N",
        help="which test image to follow through the model (default: 0)",
    )
    parser.add_argument("--data-dir", metavar="DIR", default=None, help=DATA_DIR_HELP)
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="runs/show",
        help="where to write the PNGs (default: %(default)s)",
    )
    parser.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download MNIST when it is not found (default: %(default)s)",
    )


def run_command(args: argparse.Namespace) -> int:
    """``minicnn show``: draw the pictures, print the prediction and the files written."""
    if (args.path is None) == (args.checkpoint is None):
        raise ValueError("minicnn show: give the checkpoint once, as PATH (or --checkpoint PATH)")
    path = args.path or args.checkpoint
    shown = show_checkpoint(path, args.index, args.data_dir, args.out, args.download)
    print(f"{path}: test image #{shown.index}, label {shown.label}, predicted {shown.prediction}")
    print(
        "softmax probabilities: "
        + "  ".join(f"{digit}: {p:.4f}" for digit, p in enumerate(shown.probabilities))
    )
    for path in shown.paths:
        print(f"wrote {path}")
    return 0
