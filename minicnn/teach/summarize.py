"""``minicnn.summary(model, input_shape)``: each layer's shapes, the deck's output-size formula
with its numbers, parameters and multiply-adds, as a table.

    >>> print(minicnn.summary(CNN(), (1, 1, 28, 28)))       # doctest: +SKIP
    layer     type       input           output           output size (H and W)  params ...
    layer1.0  Conv2d     (1, 1, 28, 28)  (1, 32, 28, 28)  (28 − 3 + 2·1) / 1 + 1 = 28  320 ...

The shapes are those of a real forward pass (``minicnn.teach.trace``), so the table holds for any
model built from ``minicnn.nn`` layers, whatever its ``forward`` does. The output-size column
puts each layer's numbers into the deck's ``O = floor((I − K + 2P) / S) + 1``; a dilation D
widens the window to ``D·(K − 1) + 1`` pixels, and ``ceil_mode`` rounds up.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from fractions import Fraction

import numpy as np

from minicnn import nn
from minicnn.teach.trace import RESHAPE, Step, trace

FORMULA = "O = floor((I − K + 2P) / S) + 1"


@dataclasses.dataclass(frozen=True)
class LayerSummary:
    """One row of the summary.

    Attributes:
        name: the layer's path in the model (``'layer1.0'``); ``''`` for a reshape.
        kind: its class name (``'Conv2d'``), or ``'reshape'``.
        input_shape, output_shape: the shapes it received and returned.
        size: the output size worked out from the formula (``'(28 − 3 + 2·1) / 1 + 1 = 28'``),
            ``''`` for layers that keep or merely reshape their input's size.
        params: the parameters this row adds to the total (0 when already counted).
        mult_adds: multiply-adds for one example (Conv2d and Linear; 0 for the rest).
        aliases: the layer's other names in the model.
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    size: str
    params: int
    mult_adds: int
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """The summary of a model; ``str()`` (or ``table()``) prints it as a table."""

    model: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layers: list[LayerSummary]
    total_params: int
    total_mult_adds: int
    unused_params: int = 0

    def table(self) -> str:
        """The summary as fixed-width text."""
        header = (
            "layer",
            "type",
            "input",
            "output",
            "output size (H and W)",
            "params",
            "mult-adds",
        )
        rows = [header]
        for layer in self.layers:
            name = "(forward)" if layer.kind == RESHAPE else layer.name or "(model)"
            if layer.aliases:
                name += " = " + " = ".join(layer.aliases)
            rows.append(
                (
                    name,
                    layer.kind,
                    _shape(layer.input_shape),
                    _shape(layer.output_shape),
                    layer.size,
                    _count(layer.params),
                    _count(layer.mult_adds),
                )
            )
        rows.append(
            ("total", "", "", "", "", f"{self.total_params:,}", f"{self.total_mult_adds:,}")
        )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        rule = tuple("-" * w for w in widths)
        rows.insert(1, rule)
        rows.insert(len(rows) - 1, rule)
        shapes = f"input {_shape(self.input_shape)} → output {_shape(self.output_shape)}"
        lines = [
            f"{self.model}: {shapes}",
            f"output size per axis: {FORMULA}; with dilation D, K becomes D·(K − 1) + 1",
            "",
        ]
        for row in rows:
            cells = [
                cell.ljust(w) if i < 5 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths))
            ]
            lines.append("  ".join(cells).rstrip())
        lines.append("")
        lines.append(
            f"parameters: {self.total_params:,} (a parameter shared by two layers counts once)"
        )
        if self.unused_params:
            lines.append(
                f"  of which {self.unused_params:,} in layers the forward pass did not call"
            )
        lines.append(
            f"multiply-adds per example: {self.total_mult_adds:,} (one Conv2d output "
            f"value takes C_in/groups·kH·kW, a Linear one in_features)"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def summary(model: nn.Module, input_shape: tuple[int, ...]) -> ModelSummary:
    """Run ``model`` on zeros of ``input_shape`` and describe every layer it called.

    Args:
        model: any ``minicnn.nn.Module`` built from minicnn layers.
        input_shape: the shape of one input batch, batch axis first, e.g. ``(1, 1, 28, 28)``.

    Returns:
        a ``ModelSummary``: ``.layers`` holds one ``LayerSummary`` per layer call (and per
        reshape in a forward); ``print()`` it for the table. A parameter shared by two layers
        (DeepCNN's ``fc1`` is also ``layer4.0``) is counted once, as torch's
        ``sum(p.numel() for p in model.parameters())`` does.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: expected a minicnn.nn.Module, got {type(model).__name__}")
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) < 2
        or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
            for d in input_shape
        )
    ):
        raise ValueError(
            f"summary: expected input_shape as a tuple of positive ints with the batch axis "
            f"first, e.g. (1, 1, 28, 28), got {input_shape!r}"
        )
    params = list(model.parameters())
    dtype = params[0].dtype if params else np.dtype(np.float32)
    traced = trace(model, np.zeros(tuple(int(d) for d in input_shape), dtype=dtype))
    counted: set[int] = set()
    rows = []
    for step in traced.layers:
        own = (
            []
            if step.module is None
            else [p for p in step.module.parameters() if id(p) not in counted]
        )
        counted.update(id(p) for p in own)
        rows.append(
            LayerSummary(
                name=step.name,
                kind=step.kind,
                input_shape=tuple(step.input.shape),
                output_shape=tuple(step.output.shape),
                size=_size_text(step),
                params=sum(p.size for p in own),
                mult_adds=_mult_adds(step),
                aliases=step.aliases,
            )
        )
    total = sum(p.size for p in params)
    return ModelSummary(
        model=type(model).__name__,
        input_shape=tuple(int(d) for d in input_shape),
        output_shape=tuple(np.shape(traced.output)),
        layers=rows,
        total_params=total,
        total_mult_adds=sum(row.mult_adds for row in rows),
        unused_params=sum(p.size for p in params if id(p) not in counted),
    )


# -- the output-size formula with numbers ---------------------------------------------------


def size_formula(
    size: int,
    kernel: int,
    stride: int,
    padding: tuple[int, int] = (0, 0),
    dilation: int = 1,
    ceil_mode: bool = False,
) -> tuple[str, int]:
    """The deck's ``O = floor((I − K + 2P) / S) + 1`` with the numbers in, and its value.

    ``padding`` is (before, after); unequal sides (``padding='same'`` with an even window)
    are written as a sum. A dilation D makes the window ``D·(K − 1) + 1`` pixels wide.
    ``ceil_mode`` rounds up, but drops a last window that would start in the right padding,
    as torch does.

        >>> size_formula(7, 2, 2, (1, 1))
        ('(7 − 2 + 2·1) / 2 + 1 = 4.5 → 4', 4)
    """
    before, after = padding
    window = dilation * (kernel - 1) + 1
    k = str(kernel) if dilation == 1 else f"({dilation}·({kernel} − 1) + 1)"
    p = f"2·{before}" if before == after else f"{before} + {after}"
    value = Fraction(size - window + before + after, stride) + 1
    out = math.ceil(value) if ceil_mode else math.floor(value)
    text = f"({size} − {k} + {p}) / {stride} + 1 = {_number(value)}"
    if out != value:
        text += f" → {out}" + (" (ceil_mode)" if ceil_mode else "")
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1
        text += f" → {out} (the last window would start in the padding)"
    return text, out


def _number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.3f}".rstrip("0")


def _axes(module: nn.Module) -> list[tuple[int, int, tuple[int, int], int, bool]]:
    """(kernel, stride, (pad before, pad after), dilation, ceil_mode) along H and along W."""
    if isinstance(module, nn.Conv2d):
        if module.padding == "same":  # the output keeps the input's size (stride 1)
            totals = [d * (k - 1) for k, d in zip(module.kernel_size, module.dilation)]
            pads = [(t // 2, t - t // 2) for t in totals]
        elif module.padding == "valid":
            pads = [(0, 0), (0, 0)]
        else:
            pads = [(p, p) for p in module.padding]
        return [
            (k, s, pad, d, False)
            for k, s, pad, d in zip(module.kernel_size, module.stride, pads, module.dilation)
        ]
    dilation = module.dilation if isinstance(module, nn.MaxPool2d) else (1, 1)
    return [
        (k, s, (p, p), d, module.ceil_mode)
        for k, s, p, d in zip(module.kernel_size, module.stride, module.padding, dilation)
    ]


def _size_text(step: Step) -> str:
    """The output-size column of a row."""
    shape_in, shape_out = step.input.shape, step.output.shape
    if isinstance(step.module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        texts = [
            size_formula(size, *axis)[0] for size, axis in zip(shape_in[-2:], _axes(step.module))
        ]
        return texts[0] if texts[0] == texts[1] else f"H: {texts[0]}; W: {texts[1]}"
    if step.kind == RESHAPE or isinstance(step.module, nn.Flatten):
        return _merge_text(shape_in, shape_out)
    return ""


def _merge_text(shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> str:
    """``'64·7·7 = 3136'`` for a reshape that merges neighbouring axes into one, else ''."""
    for start in range(len(shape_in)):
        for end in range(start + 1, len(shape_in)):
            merged = (
                shape_in[:start] + (math.prod(shape_in[start : end + 1]),) + shape_in[end + 1 :]
            )
            if merged == shape_out:
                factors = "·".join(str(d) for d in shape_in[start : end + 1])
                return f"{factors} = {merged[start]}"
    return ""


def _mult_adds(step: Step) -> int:
    """Multiply-adds for one example: each output value of a Conv2d is a sum of
    C_in/groups·kH·kW products, each of a Linear one of in_features products."""
    per_example = math.prod(step.output.shape[1:])  # output values per example
    module = step.module
    if isinstance(module, nn.Conv2d):
        kH, kW = module.kernel_size
        return per_example * (module.in_channels // module.groups) * kH * kW
    if isinstance(module, nn.Linear):
        return per_example * module.in_features
    return 0


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _count(number: int) -> str:
    return f"{number:,}" if number else "-"


# -- the command line: minicnn summary ------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``minicnn summary``'s options."""
    from minicnn.models import MODELS

    parser.add_argument(
        "--model",
        choices=tuple(MODELS),
        default="cnn",
        help="the deck's CNN, or deep: DeepCNN (default: %(default)s)",
    )


def run_command(args: argparse.Namespace) -> int:
    """``minicnn summary``: the table for one MNIST image, ``(1, 1, 28, 28)``."""
    from minicnn.models import MODELS

    # the weights do not matter here: build them from a generator of our own, so the
    # default generator's stream is left as it was
    model = MODELS[args.model](generator=np.random.default_rng(0))
    print(summary(model, (1, 1, 28, 28)))
    return 0
