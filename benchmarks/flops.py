"""Multiply-adds per image for every layer of the deck's models, forward and backward.

Only the convolutions and the linear layers do arithmetic that grows with the weights; ReLU,
pooling and dropout touch each value once and are limited by memory, so they count zero here.
For a layer computing ``out = W x`` (a convolution is the same product on im2col's columns):

    forward            MACs = outputs per image x inputs per output
                            = C_out * oH * oW * (C_in / groups) * kH * kW    (Conv2d)
                            = out_features * in_features                      (Linear)
    backward, weights  the same count (grad_W = grad_out x^T)
    backward, input    the same count (grad_x = W^T grad_out), needed by every layer but the
                       first: the images need no gradient, and torch skips it there

One MAC is two floating-point operations. ``python -m benchmarks.flops`` prints the table;
``achieved`` turns the per-layer times of ``benchmarks.layers`` into GFLOP/s.

Shapes are found by running the minicnn model once on one image with every leaf's forward
wrapped, so the counts follow the model's code rather than a copy of its architecture.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class LayerFlops:
    """One leaf layer: its shapes per image and its multiply-adds per image."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    forward_macs: int
    weight_grad_macs: int
    input_grad_macs: int  # 0 for the first layer: the images need no gradient

    @property
    def backward_macs(self) -> int:
        return self.weight_grad_macs + self.input_grad_macs


def count(model_name: str) -> list[LayerFlops]:
    """Every leaf layer of ``minicnn.models.MODELS[model_name]`` in forward order."""
    import minicnn
    from minicnn.models import MODELS

    model = MODELS[model_name](generator=np.random.default_rng(0))
    x = np.zeros((1, 1, 28, 28), dtype=np.float32)  # (1, C, H, W): one MNIST image
    seen: list[tuple[str, object, tuple, tuple, bool]] = []
    leaves = [(n, m) for n, m in model.named_modules() if not m._modules]
    for name, module in leaves:
        forward = module.forward

        def recording(*args, _forward=forward, _name=name, _module=module):
            out = _forward(*args)
            seen.append((_name, _module, args[0].shape[1:], out.shape[1:], args[0] is x))
            return out

        module.__dict__["forward"] = recording  # an instance attribute shadows the method
    try:
        with minicnn.use_backend("numpy"), minicnn.no_grad():
            model.eval()(x)
    finally:
        for _, module in leaves:
            module.__dict__.pop("forward", None)
    return [_macs(*entry) for entry in seen]


def _macs(name: str, module, input_shape: tuple, output_shape: tuple, first: bool) -> LayerFlops:
    kind = type(module).__name__
    if kind == "Conv2d":
        kH, kW = module.kernel_size
        per_output = module.in_channels // module.groups * kH * kW
        forward = int(np.prod(output_shape)) * per_output  # C_out * oH * oW * C_in/g * kH * kW
    elif kind == "Linear":
        forward = int(np.prod(output_shape)) * module.in_features  # out * in
    else:
        forward = 0
    return LayerFlops(
        name,
        kind,
        tuple(input_shape),
        tuple(output_shape),
        forward,
        forward,
        0 if first else forward,
    )


def achieved(macs_per_image: int, batch: int, seconds: float) -> float | None:
    """GFLOP/s of ``macs_per_image`` multiply-adds on ``batch`` images in ``seconds``."""
    if macs_per_image == 0 or not seconds or seconds <= 0:
        return None
    return 2 * macs_per_image * batch / seconds / 1e9


def table(model_name: str) -> str:
    """The Markdown table of ``count(model_name)`` with totals, in MFLOP per image."""
    rows = count(model_name)
    lines = [
        "| layer | kind | input → output | forward MFLOP | backward MFLOP (weights + input) |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for r in rows:
        if r.forward_macs == 0:
            continue
        shapes = f"{'×'.join(map(str, r.input_shape))} → {'×'.join(map(str, r.output_shape))}"
        input_part = f"{2 * r.input_grad_macs / 1e6:.2f}" if r.input_grad_macs else "0 (first)"
        lines.append(
            f"| {r.name} | {r.kind} | {shapes} | {2 * r.forward_macs / 1e6:.2f} | "
            f"{2 * r.backward_macs / 1e6:.2f} ({2 * r.weight_grad_macs / 1e6:.2f} + "
            f"{input_part}) |"
        )
    forward = sum(r.forward_macs for r in rows)
    backward = sum(r.backward_macs for r in rows)
    lines.append(f"| **total** | | | **{2 * forward / 1e6:.2f}** | **{2 * backward / 1e6:.2f}** |")
    lines.append(
        f"\nA training step: {2 * (forward + backward) / 1e6:.1f} MFLOP per image; "
        f"inference: {2 * forward / 1e6:.1f} MFLOP per image."
    )
    return "\n".join(lines)


def main() -> None:
    from benchmarks.engines import MODEL_NAMES

    for name, title in MODEL_NAMES.items():
        print(f"### {title}\n\n{table(name)}\n")


if __name__ == "__main__":
    main()
