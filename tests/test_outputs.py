"""minicnn.train.outputs: a run never replaces an earlier run's files without being asked, says
when it has nothing to train, and lists every file it wrote."""

from __future__ import annotations

import pytest

from minicnn.train import TrainConfig
from minicnn.train.outputs import check_outputs, metrics_log
from tests.test_cli import run

QUICK = ["--train-limit", "100", "--test-limit", "100", "--progress", "none"]


def test_a_second_run_does_not_start_over_an_existing_checkpoint(mnist_dir, tmp_path):
    save = tmp_path / "c.safetensors"
    args = ["train", "--epochs", "1", "--data-dir", str(mnist_dir), "--save", str(save), *QUICK]
    code, out, err = run(args)
    assert code == 0, err
    written = [line.removeprefix("Wrote ") for line in out.splitlines() if line.startswith("Wrote")]
    assert written[0] == str(save) and written[-1] == str(tmp_path / "c.metrics.jsonl")
    assert all((tmp_path / path).is_file() for path in written)
    before = save.read_bytes()

    code, out, err = run(args)  # the same command again: refused before any work
    assert code == 1 and "--resume" in err and "--overwrite" in err and out == ""
    assert save.read_bytes() == before

    code, _, err = run([*args, "--resume", str(save), "--epochs", "2"])  # continuing is fine
    assert code == 0, err
    code, _, err = run([*args, "--overwrite"])  # and so is asking
    assert code == 0, err


def test_a_run_that_trains_nothing_says_so(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data-dir", str(mnist_dir), *QUICK]
    code, out, err = run([*args, "--epochs", "0"])
    assert code == 0, err
    assert "Nothing to train: --epochs 0" in out
    save = tmp_path / "c.safetensors"
    assert run([*args, "--epochs", "1", "--save", str(save)])[0] == 0
    code, out, err = run([*args, "--epochs", "1", "--save", str(save), "--resume", str(save)])
    assert code == 0, err
    assert f"{save} has trained 1" in out


def test_default_logs_are_numbered_not_replaced(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        code, out, err = run(["train", "--epochs", "0", "--data-dir", str(mnist_dir), *QUICK])
        assert code == 0, err
    assert out.strip().endswith("Wrote runs/cnn-minicnn-2.jsonl")
    assert (tmp_path / "runs" / "cnn-minicnn.jsonl").read_text().count("accuracy") == 1


def test_given_files_are_not_replaced_and_plots_are_pngs(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("another run's")
    for option in ("metrics", "plot"):
        name = taken.with_suffix(".png") if option == "plot" else taken
        name.write_text("another run's")
        with pytest.raises(ValueError, match=f"--{option} .*exists already.*--overwrite"):
            check_outputs(TrainConfig(**{option: str(name)}))
        check_outputs(TrainConfig(**{option: str(name)}, overwrite=True))
    with pytest.raises(ValueError, match="--plot runs: expected a file name ending in .png"):
        check_outputs(TrainConfig(plot="runs"))
    assert metrics_log(TrainConfig(metrics=str(taken), overwrite=True)) == taken


def test_a_run_that_fails_before_logging_leaves_no_log(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    metrics = tmp_path / "m.jsonl"
    args = ["train", "--data-dir", str(mnist_dir), "--metrics", str(metrics), *QUICK]
    code, _, err = run([*args, "--batch-size", "1000", "--epochs", "1"])  # no batch of 1000
    assert code == 1 and "make no batch" in err, err
    assert not metrics.exists() and not (tmp_path / "runs").exists()
    code, _, err = run([*args, "--epochs", "0"])  # so the same command, mended, runs
    assert code == 0, err
