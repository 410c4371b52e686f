"""minicnn.teach.show and ``minicnn show``: the PNGs for a checkpoint (kernels, feature maps after
each block, prediction), the prediction it prints, and clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from minicnn import functional as F
from minicnn.data import load_mnist, to_float
from minicnn.io.checkpoint import save_checkpoint
from minicnn.models import MODELS
from minicnn.teach.show import _montage, show_checkpoint
from tests.test_cli import run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained CNN and DeepCNN checkpoints: the pictures need weights, not good ones."""
    tmp = tmp_path_factory.mktemp("show")
    paths = {}
    for name in ("cnn", "deep"):
        model = MODELS[name](generator=np.random.default_rng(0))
        paths[name] = save_checkpoint(tmp / f"{name}.safetensors", model, model_name=name)
    return paths


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize(
    "name, blocks", [("cnn", ["layer1", "layer2"]), ("deep", ["layer1", "layer2", "layer3"])]
)
def test_show_draws_kernels_feature_maps_and_prediction(
    checkpoints, mnist_dir, tmp_path, name, blocks
):
    shown = show_checkpoint(checkpoints[name], index=3, data_dir=mnist_dir, out=tmp_path)
    expected = ["kernels.png", *(f"features-{b}.png" for b in blocks), "prediction.png"]
    assert [p.name for p in shown.paths] == expected
    for path in shown.paths:
        width, height = png_size(path)
        assert width >= 400 and height >= 250, path.name
    images, labels = load_mnist(mnist_dir, train=False)
    model = MODELS[name](generator=np.random.default_rng(0)).eval()
    logits = model(to_float(images[3:4]))  # (1, 10)
    np.testing.assert_allclose(
        shown.probabilities, F.softmax(logits.astype(np.float64), 1)[0], rtol=1e-6
    )
    assert shown.prediction == int(logits.argmax()) and shown.label == int(labels[3])


def test_montage_places_each_map_in_its_tile():
    maps = np.arange(5 * 2 * 3, dtype=np.float64).reshape(5, 2, 3)
    grid = _montage(maps, columns=2)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1)
    np.testing.assert_array_equal(grid[3:5, 4:7], maps[3])  # row 1, column 1
    assert np.isnan(grid[2]).all() and np.isnan(grid[:, 3]).all()  # the gaps
    assert np.isnan(grid[6:8, 4:7]).all()  # no sixth map


def test_show_command_prints_the_prediction_and_the_files(checkpoints, mnist_dir, tmp_path):
    code, out, err = run(
        [
            "show",
            str(checkpoints["cnn"]),  # PATH, as minicnn eval takes it
            "--index",
            "0",
            "--data-dir",
            str(mnist_dir),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, err
    lines = out.splitlines()
    label = int(load_mnist(mnist_dir, train=False)[1][0])
    assert lines[0].endswith(f"test image #0, label {label}, predicted " + lines[0].split()[-1])
    probabilities = [float(word) for word in lines[1].split()[3::2]]
    assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-3
    assert [line.split("/")[-1] for line in lines[2:]] == [
        "kernels.png",
        "features-layer1.png",
        "features-layer2.png",
        "prediction.png",
    ]
    assert all((tmp_path / line.split("/")[-1]).is_file() for line in lines[2:])


def test_a_bad_index_is_a_clear_error(checkpoints, mnist_dir, tmp_path):
    code, _, err = run(
        [
            "show",
            "--checkpoint",
            str(checkpoints["cnn"]),
            "--index",
            "10000",
            "--data-dir",
            str(mnist_dir),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1 and "--index 10000 is not a test image: expected 0 to 9999" in err


def test_the_checkpoint_is_given_exactly_once(checkpoints, tmp_path):
    path = str(checkpoints["cnn"])
    for args in (["show"], ["show", path, "--checkpoint", path]):
        code, _, err = run([*args, "--out", str(tmp_path)])
        assert code == 1 and "give the checkpoint once" in err, err
    assert not any(tmp_path.iterdir())


def test_without_matplotlib_show_says_how_to_install_it(checkpoints, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, _, err = run(["show", "--checkpoint", str(checkpoints["cnn"]), "--out", str(tmp_path)])
    assert code == 1 and "needs matplotlib" in err and "minicnn[plot]" in err
    assert not any(tmp_path.iterdir())


def test_show_help_is_complete():
    code, out, _ = run(["show", "--help"])
    assert code == 0
    for flag in (
        "PATH",
        "--checkpoint PATH",
        "--index N",
        "--data-dir DIR",
        "--out DIR",
        "--download",
    ):
        assert flag in out
