"""minicnn.cli: complete help, a short real-MNIST training through ``minicnn train``, its
epoch lines, metrics, plot and checkpoint, ``eval``, the torch engine, and clear errors."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
import time
import unittest.mock

import numpy as np
import pytest

from minicnn.cli import COMMANDS, main
from minicnn.data import load_mnist, mnist_file
from minicnn.io.checkpoint import load_checkpoint, load_model
from minicnn.optim import Adam
from minicnn.train import TrainConfig, accuracy
from minicnn.train.minicnn_engine import compile_notice

EPOCH_LINE = re.compile(r"^\[Epoch: {4}1\] cost = (\d\.\d+)  \(\d+\.\d s, \d+ img/s\)$", re.M)
# 1 epoch on the first 6,000 images, tested on the first 2,000: measured 0.851
SMOKE_ACCURACY = 0.80


def run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)``'s exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def accuracy_in(text: str, label: str = "Accuracy") -> float:
    return float(re.search(rf"^{re.escape(label)}: (\d\.\d+)$", text, re.M)[1])


@pytest.fixture(scope="module")
def smoke(mnist_dir, tmp_path_factory):
    """One short minicnn run through the CLI, shared by the tests that inspect its outputs."""
    tmp = tmp_path_factory.mktemp("smoke")
    argv = [
        "train",
        "--model",
        "cnn",
        "--epochs",
        "1",
        "--train-limit",
        "6000",
        "--test-limit",
        "2000",
        "--data-dir",
        str(mnist_dir),
        "--save",
        str(tmp / "cnn.safetensors"),
        "--plot",
        str(tmp / "cnn.png"),
        "--deck-eval",
        "--progress",
        "none",
    ]
    code, out, err = run(argv)
    assert code == 0, err
    return tmp, out


def test_top_level_help_lists_every_command():
    code, out, _ = run(["--help"])
    assert code == 0
    assert "usage: minicnn" in out and "from-scratch NumPy/Numba engine" in out
    for name, command in COMMANDS.items():
        assert name in out and command.help in out


@pytest.mark.parametrize("name", ["train", "eval", "download"])
def test_subcommand_help_is_complete(name):
    code, out, _ = run([name, "--help"])
    assert code == 0
    assert f"usage: minicnn {name}" in out
    assert COMMANDS[name].description.split()[0] in out
    if name == "train":
        for field in dataclasses.fields(TrainConfig):
            flag = "--" + field.name.replace("_", "-")
            assert flag in out, flag
        assert "--no-download" in out and "(default: 100)" in out and "(default: 777)" in out


def test_train_and_eval_spell_their_shared_options_alike():
    helps = {name: run([name, "--help"])[1] for name in ("train", "eval")}
    for flag in ("--deck-eval", "--no-deck-eval", "--download", "--no-download", "--data-dir"):
        assert all(flag in text for text in helps.values()), flag


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "minicnn", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.startswith("minicnn "), done.stderr


def test_train_prints_the_decks_epoch_line_and_reaches_the_accuracy(smoke):
    _, out = smoke
    line = EPOCH_LINE.search(out)
    assert line, out
    assert f"{float(line[1]):.9}" == line[1]  # '{:>.9}' of a Python float
    assert accuracy_in(out) >= SMOKE_ACCURACY, out


def test_deck_eval_prints_both_accuracies(smoke):
    _, out = smoke
    label = (
        "Accuracy (the deck's evaluation, on raw 0-255 pixels although the model was "
        "trained on 0-1 inputs)"
    )
    raw = accuracy_in(out, label)
    assert 0 <= raw <= 1 and raw != accuracy_in(out)


def test_metrics_jsonl_has_one_line_per_epoch_then_the_accuracy(smoke):
    tmp, out = smoke
    lines = [json.loads(line) for line in (tmp / "cnn.metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    epoch, final = lines
    assert set(epoch) == {"epoch", "cost", "seconds", "images_per_s"} and epoch["epoch"] == 1
    assert f"{epoch['cost']:.9}" == EPOCH_LINE.search(out)[1]
    assert epoch["seconds"] > 0 and epoch["images_per_s"] > 0
    assert final["accuracy"] == accuracy_in(out) and final["test_images"] == 2000
    assert "deck_accuracy" in final


def test_plot_writes_a_png(smoke):
    tmp, _ = smoke
    data = (tmp / "cnn.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_eval_of_the_checkpoint_gives_the_same_accuracy(smoke, mnist_dir):
    tmp, out = smoke
    checkpoint = load_checkpoint(tmp / "cnn.safetensors")
    assert (checkpoint.epoch, checkpoint.step, checkpoint.config["train_limit"]) == (1, 60, 6000)
    code, evaluated, err = run(
        [
            "eval",
            str(tmp / "cnn.safetensors"),
            "--data-dir",
            str(mnist_dir),
            "--test-limit",
            "2000",
            "--deck-eval",
        ]
    )
    assert code == 0, err
    assert accuracy_in(evaluated) == accuracy_in(out)
    assert "raw 0-255 pixels" in evaluated


def test_eval_reads_the_test_split_only(smoke, mnist_dir, tmp_path):
    tmp, _ = smoke
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(mnist_dir / name, tmp_path / name)  # no training files beside them
    code, out, err = run(
        ["eval", str(tmp / "cnn.safetensors"), "--data-dir", str(tmp_path), "--no-download"]
    )
    assert code == 0, err
    assert "10000 test images" in out and "Accuracy:" in out


def train_with_torch(device: str, mnist_dir, path) -> tuple[int, str, str]:
    """``minicnn train --engine torch`` for one epoch of 1,000 images, tested on 500, saved
    to ``path``: its exit code, stdout and stderr."""
    return run(
        [
            "train",
            "--engine",
            "torch",
            "--device",
            device,
            "--epochs",
            "1",
            "--train-limit",
            "1000",
            "--test-limit",
            "500",
            "--data-dir",
            str(mnist_dir),
            "--save",
            str(path),
            "--progress",
            "none",
        ]
    )


def test_torch_engine_trains_from_the_same_command_and_loads_into_minicnn(mnist_dir, tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "torch.safetensors"
    code, out, err = train_with_torch("cpu", mnist_dir, path)
    assert code == 0, err
    assert "with torch on cpu" in out and EPOCH_LINE.search(out), out
    checkpoint = load_checkpoint(path)
    assert checkpoint.config["engine"] == "torch" and set(checkpoint.rng_state) >= {"torch"}
    model = load_model(path)
    Adam(model.parameters()).load_state_dict(checkpoint.optimizer_state)
    images, labels = load_mnist(mnist_dir, train=False)
    ours = accuracy(model, images[:500], labels[:500])
    # the same weights in another engine: at most a rare float32 tie flips a prediction
    assert abs(ours - accuracy_in(out)) <= 2 / 500


def test_missing_data_with_no_download_is_a_clear_error(tmp_path):
    code, _, err = run(["train", "--data-dir", str(tmp_path / "nowhere"), "--no-download"])
    assert code == 1
    assert "MNIST not found" in err and "--data-dir" in err and "--no-download" in err


def test_cuda_with_the_minicnn_engine_is_a_clear_error():
    code, _, err = run(["train", "--device", "cuda"])
    assert code == 1 and "CPU only" in err and "--engine torch" in err


def test_cuda_without_cuda_is_a_clear_error(mnist_dir):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(
        [
            "train",
            "--engine",
            "torch",
            "--device",
            "cuda",
            "--data-dir",
            str(mnist_dir),
            "--train-limit",
            "100",
            "--test-limit",
            "10",
        ]
    )
    assert code == 1 and "--device cuda" in err and "no CUDA device" in err


def test_bad_model_is_a_usage_error():
    code, _, err = run(["train", "--model", "resnet"])
    assert code == 2 and "invalid choice: 'resnet'" in err


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="--batch-size 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="--lr"):
        TrainConfig(lr=float("nan"))


def test_download_finds_existing_data_without_the_network(mnist_dir):
    code, out, _ = run(["download", "--data-dir", str(mnist_dir)])
    assert code == 0 and str(mnist_dir) in out


def test_accuracy_restores_training_mode(mnist_dir):
    from minicnn.models import CNN

    model = CNN(generator=np.random.default_rng(0))
    images, labels = load_mnist(mnist_dir, train=False)
    accuracy(model, images[:10], labels[:10])
    assert model.training


def test_a_slow_first_step_says_the_kernels_are_compiling(capsys):
    with compile_notice(after=0.05):
        time.sleep(1.0)  # as the first step while Numba compiles
    assert "compiling minicnn's kernels" in capsys.readouterr().err
    with compile_notice(after=0.5):
        pass  # a warm step: nothing said
    time.sleep(0.6)
    assert capsys.readouterr().err == ""


def test_download_checks_the_files_it_finds(mnist_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(mnist_dir, data)
    victim = mnist_file(data, "t10k-labels-idx1-ubyte")
    victim.write_bytes(victim.read_bytes()[:-50])

    def offline(request, timeout):
        raise OSError("offline")

    # no mirror answers here, so the damaged file must be reported, not called MNIST
    with unittest.mock.patch("minicnn.data.download._urlopen", offline):
        code, out, err = run(["download", "--data-dir", str(data)])
    assert code != 0 and "MNIST is in" not in out
    assert "t10k-labels-idx1-ubyte.gz" in err and "Traceback" not in err
