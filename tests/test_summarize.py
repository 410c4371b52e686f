"""minicnn.summary: every layer's shapes against torch's (forward hooks on reference.models and
on a tree of every layer type), the totals against torch's parameter count, the output-size
formula's numbers, and ``minicnn summary``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import minicnn
from minicnn import nn, random
from minicnn.models import MODELS
from minicnn.teach.summarize import size_formula, summary
from reference import models as reference
from tests.test_cli import run


def torch_calls(model: torch.nn.Module, shape: tuple[int, ...]) -> list[tuple]:
    """(class name, input shape, output shape, every name of the module) for each call of a
    module without children, in the order they ran, seen by forward hooks."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(name)
    calls = []

    def hook(module, inputs, output):
        calls.append(
            (type(module).__name__, tuple(inputs[0].shape), tuple(output.shape), names[id(module)])
        )

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def assert_matches_torch(ours: nn.Module, theirs: torch.nn.Module, shape: tuple[int, ...]):
    result = summary(ours, shape)
    calls = torch_calls(theirs, shape)
    layers = [row for row in result.layers if row.kind != "reshape"]
    assert len(layers) == len(calls)
    for row, (kind, shape_in, shape_out, names) in zip(layers, calls):
        assert (row.kind, row.input_shape, row.output_shape) == (kind, shape_in, shape_out), row
        assert row.name in names and set(row.aliases) == set(names) - {row.name}, row
    # a reshape row links the shapes around it
    for before, row, after in zip(result.layers, result.layers[1:], result.layers[2:]):
        if row.kind == "reshape":
            assert row.input_shape == before.output_shape
            assert row.output_shape == after.input_shape
    assert result.total_params == sum(p.numel() for p in theirs.parameters())
    assert result.output_shape == calls[-1][2]
    return result


@pytest.mark.parametrize("name, total", [("cnn", 50_186), ("deep", 1_379_557)])
def test_the_decks_models_match_torch(name, total):
    ours = MODELS[name](generator=np.random.default_rng(0))
    result = assert_matches_torch(ours, reference.MODELS[name](), (2, 1, 28, 28))
    assert result.total_params == total
    assert sum(row.params for row in result.layers) == total and result.unused_params == 0
    # the flatten in forward shows as a reshape: 64·7·7 = 3136, or 128·4·4 = 2048
    (reshape,) = [row for row in result.layers if row.kind == "reshape"]
    C, H, W = reshape.input_shape[1:]
    assert reshape.size == f"{C}·{H}·{W} = {C * H * W}"


def test_deep_cnn_shares_fc1_with_layer4_and_counts_it_once():
    result = summary(MODELS["deep"](generator=np.random.default_rng(0)), (1, 1, 28, 28))
    (row,) = [row for row in result.layers if row.name == "layer4.0"]
    assert row.aliases == ("fc1",) and row.params == 2048 * 625 + 625
    assert "layer4.0 = fc1" in result.table()


def _tree(lib, features: int | None = None):
    """Every layer type, nested, with stride, dilation, groups, 'same' padding and ceil_mode
    (the last MaxPool2d's last window would start in the padding and is dropped)."""
    body = [
        lib.Conv2d(3, 4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
        lib.Sequential(
            lib.ReLU(), lib.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True)
        ),
        lib.Conv2d(4, 6, kernel_size=2, padding="same", groups=2, bias=False),
        lib.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        lib.MaxPool2d(2, stride=2, padding=1, ceil_mode=True),
        lib.Flatten(),
    ]
    if features is None:
        return lib.Sequential(*body)
    return lib.Sequential(*body, lib.Sequential(lib.Linear(features, 5), lib.Dropout(0.3)))


def test_any_tree_of_minicnn_layers_matches_torch():
    shape = (2, 3, 21, 17)
    with torch.no_grad():
        features = _tree(torch.nn)(torch.zeros(shape)).shape[1]
    result = assert_matches_torch(_tree(nn, features), _tree(torch.nn, features), shape)
    conv = result.layers[0]
    assert conv.size.startswith("H: (21 − 3 + 2·1) / 2 + 1 = 11; W: (17 − (2·(2 − 1) + 1)")
    assert "the last window would start in the padding" in result.layers[5].size
    assert result.layers[6].kind == "Flatten" and "·" in result.layers[6].size


def test_multiply_adds_count_one_product_per_weight_tap_and_output():
    result = summary(MODELS["cnn"](generator=np.random.default_rng(0)), (1, 1, 28, 28))
    by_name = {row.name: row.mult_adds for row in result.layers}
    assert by_name["layer1.0"] == 32 * 28 * 28 * (1 * 3 * 3)
    assert by_name["layer2.0"] == 64 * 14 * 14 * (32 * 3 * 3)
    assert by_name["fc"] == 10 * 3136
    assert by_name["layer1.1"] == by_name["layer1.2"] == 0
    assert result.total_mult_adds == sum(by_name.values())
    grouped = summary(nn.Conv2d(4, 6, 3, groups=2), (1, 4, 5, 5)).layers[0]
    assert grouped.mult_adds == 6 * 3 * 3 * (2 * 3 * 3)  # each filter sees 4/2 channels


def test_size_formula_shows_the_decks_numbers():
    assert size_formula(7, 2, 2, (1, 1)) == ("(7 − 2 + 2·1) / 2 + 1 = 4.5 → 4", 4)
    assert size_formula(28, 3, 1, (1, 1)) == ("(28 − 3 + 2·1) / 1 + 1 = 28", 28)
    assert size_formula(9, 3, 2, (1, 1), dilation=2) == (
        "(9 − (2·(3 − 1) + 1) + 2·1) / 2 + 1 = 4",
        4,
    )
    assert size_formula(6, 3, 2, (0, 0), ceil_mode=True) == (
        "(6 − 3 + 2·0) / 2 + 1 = 2.5 → 3 (ceil_mode)",
        3,
    )
    dropped = "→ 3 (the last window would start in the padding)"
    assert size_formula(5, 2, 2, (1, 1), ceil_mode=True) == (
        f"(5 − 2 + 2·1) / 2 + 1 = 3.5 → 4 (ceil_mode) {dropped}",
        3,
    )
    assert size_formula(6, 4, 1, (1, 2)) == ("(6 − 4 + 1 + 2) / 1 + 1 = 6", 6)


def test_size_formula_gives_torchs_output_size():
    grid = itertools.product(range(4, 9), range(1, 4), range(1, 4), range(2), (1, 2), (False, True))
    checked = 0
    for size, kernel, stride, pad, dilation, ceil in grid:
        if pad > kernel // 2 or size + 2 * pad < dilation * (kernel - 1) + 1:
            continue  # torch refuses these
        out = torch.nn.functional.max_pool2d(
            torch.zeros(1, 1, size, size), kernel, stride, pad, dilation, ceil
        )
        assert size_formula(size, kernel, stride, (pad, pad), dilation, ceil)[1] == out.shape[-1]
        if not ceil:
            conv = torch.conv2d(
                torch.zeros(1, 1, size, size),
                torch.zeros(1, 1, kernel, kernel),
                stride=stride,
                padding=pad,
                dilation=dilation,
            )
            assert size_formula(size, kernel, stride, (pad, pad), dilation)[1] == conv.shape[-1]
        checked += 1
    assert checked > 200


def test_summary_leaves_the_model_and_the_random_stream_as_they_were():
    model = MODELS["deep"](generator=np.random.default_rng(0))
    state = random.get_state()
    with minicnn.no_grad():  # summary records calls even here
        result = summary(model, (1, 1, 28, 28))
    assert result.total_params == 1_379_557
    assert model.training and random.get_state() == state
    assert all(getattr(m, "saved", None) is None for m in model.modules())


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="summary: expected a minicnn.nn.Module, got str"):
        summary("CNN", (1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"input_shape .* batch axis first.*got \(28, 0\)"):
        summary(nn.ReLU(), (28, 0))
    with pytest.raises(ValueError, match="Conv2d"):  # the layer names itself
        summary(MODELS["cnn"](generator=np.random.default_rng(0)), (1, 3, 28, 28))


def test_summary_command_prints_the_table():
    code, out, _ = run(["summary", "--model", "deep"])
    assert code == 0
    assert out.startswith("DeepCNN: input (1, 1, 28, 28) → output (1, 10)")
    assert "(7 − 2 + 2·1) / 2 + 1 = 4.5 → 4" in out and "1,379,557" in out
    model = MODELS["deep"](generator=np.random.default_rng(1))
    assert out == str(summary(model, (1, 1, 28, 28))) + "\n"


def test_summary_help_is_complete():
    code, out, _ = run(["summary", "--help"])
    assert code == 0 and "usage: minicnn summary" in out and "--model {cnn,deep}" in out
