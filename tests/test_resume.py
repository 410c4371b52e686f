"""Resuming is exact: 2 epochs in one go equal 1 epoch + resume + 1 epoch bit for bit (weights,
optimizer state, costs, accuracy), also after a Ctrl-C mid-epoch; a NaN loss stops the run and
leaves the last good checkpoint as it was."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import shlex
import shutil
import signal

import numpy as np
import pytest

from minicnn.cli import main
from minicnn.io import checkpoint as checkpoint_module
from minicnn.io import safetensors as st
from minicnn.io.checkpoint import load_checkpoint
from minicnn.train import MinicnnEngine, TrainConfig, TrainingDiverged, TrainingInterrupted, train
from minicnn.train.config import train_command

# small runs: 6 batches of 50 per epoch (4 for DeepCNN, the slow one), 100 test images
LIMITS = {"cnn": 300, "deep": 200}
CASES = [("minicnn", "cnn"), ("minicnn", "deep"), ("torch", "cnn"), ("torch", "deep")]


def config(mnist_dir, tmp_path, name: str, engine: str, model: str, **changes) -> TrainConfig:
    base = TrainConfig(
        model=model,
        engine=engine,
        device="cpu",
        epochs=2,
        batch_size=50,
        data_dir=str(mnist_dir),
        train_limit=LIMITS[model],
        test_limit=100,
        save=str(tmp_path / f"{name}.safetensors"),
        progress="none",
    )
    return TrainConfig(**{**base.__dict__, **changes})


def quiet(function, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return function(*args, **kwargs)


def metrics(path) -> list[dict]:
    """The JSONL log without the wall-clock fields, which no two runs share."""
    drop = {"seconds", "images_per_s"}
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in drop} for line in lines]


def assert_same_run(path_a, path_b) -> None:
    """Two checkpoints hold bit-identical weights, optimizer state, step and costs."""
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    assert (a.epoch, a.step) == (b.epoch, b.step)
    assert list(a.state_dict) == list(b.state_dict)
    for key, array in a.state_dict.items():
        assert array.dtype == b.state_dict[key].dtype
        assert array.tobytes() == b.state_dict[key].tobytes(), key
    assert a.optimizer_state["param_groups"] == b.optimizer_state["param_groups"]
    assert a.optimizer_state["state"].keys() == b.optimizer_state["state"].keys()
    for index, buffers in a.optimizer_state["state"].items():
        for name, value in buffers.items():
            other = b.optimizer_state["state"][index][name]
            assert np.asarray(value).tobytes() == np.asarray(other).tobytes(), (index, name)
    assert [m["cost"] for m in a.metrics] == [m["cost"] for m in b.metrics]


@pytest.fixture(scope="module")
def straight(mnist_dir, tmp_path_factory):
    """The uninterrupted 2-epoch run of each case, computed once: (config, result)."""
    runs = {}

    def get(engine: str, model: str):
        if (engine, model) not in runs:
            if engine == "torch":
                pytest.importorskip("torch")
            tmp = tmp_path_factory.mktemp(f"{engine}-{model}")
            cfg = config(mnist_dir, tmp, "straight", engine, model)
            runs[engine, model] = cfg, quiet(train, cfg)
        return runs[engine, model]

    return get


@pytest.mark.parametrize(("engine", "model"), CASES)
def test_one_epoch_resume_one_epoch_equals_two_epochs(straight, mnist_dir, tmp_path, engine, model):
    whole, whole_result = straight(engine, model)
    first = config(mnist_dir, tmp_path, "split", engine, model, epochs=1)
    quiet(train, first)
    assert load_checkpoint(first.save).epoch == 1
    second = config(mnist_dir, tmp_path, "split", engine, model, resume=first.save)
    result = quiet(train, second)
    assert_same_run(whole.save, second.save)
    assert result.costs == whole_result.costs and len(result.costs) == 2
    assert result.accuracy == whole_result.accuracy and result.steps == whole_result.steps
    assert metrics(result.metrics) == metrics(whole_result.metrics)


@pytest.mark.parametrize(("engine", "model"), CASES)
@pytest.mark.parametrize("stop_after", [2, "last"])  # mid-epoch, or on an epoch's last batch
def test_sigint_saves_a_checkpoint_that_resumes_exactly(
    straight, mnist_dir, tmp_path, engine, model, stop_after
):
    whole, whole_result = straight(engine, model)
    cfg = config(mnist_dir, tmp_path, "stopped", engine, model)
    n_batches = LIMITS[model] // cfg.batch_size
    batch = n_batches if stop_after == "last" else stop_after

    def press_ctrl_c(info) -> None:
        if (info.epoch, info.batch) == (1, batch):
            signal.raise_signal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job
    with pytest.raises(TrainingInterrupted) as interrupted:
        quiet(train, cfg, on_batch=press_ctrl_c)
    assert str(interrupted.value.path) == cfg.save
    assert f"--resume {cfg.save}" in interrupted.value.command
    assert signal.getsignal(signal.SIGINT) is before  # the handler restored
    saved = load_checkpoint(cfg.save)
    assert saved.step == batch
    assert saved.epoch == (1 if stop_after == "last" else 0)
    assert saved.metrics[-1].get("partial", False) == (stop_after != "last")

    result = quiet(train, config(mnist_dir, tmp_path, "stopped", engine, model, resume=cfg.save))
    assert_same_run(whole.save, cfg.save)
    assert result.costs == whole_result.costs and result.accuracy == whole_result.accuracy
    assert metrics(result.metrics) == metrics(whole_result.metrics)


def test_ctrl_c_through_the_cli_exits_130_and_prints_a_working_resume_command(
    straight, mnist_dir, tmp_path, monkeypatch
):
    whole, whole_result = straight("minicnn", "cnn")
    save = tmp_path / "cli.safetensors"
    argv = [
        "train",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--train-limit",
        "300",
        "--test-limit",
        "100",
        "--device",
        "cpu",
        "--data-dir",
        str(mnist_dir),
        "--save",
        str(save),
        "--progress",
        "none",
    ]
    step = MinicnnEngine.step

    def step_then_ctrl_c(self, batch):
        cost = step(self, batch)
        if batch == 3:
            signal.raise_signal(signal.SIGINT)
        return cost

    monkeypatch.setattr(MinicnnEngine, "step", step_then_ctrl_c)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(argv) == 130
    command = err.getvalue().split("Resume with: ")[1].strip()
    words = shlex.split(command)
    assert words[:2] == ["minicnn", "train"] and words[-2:] == ["--resume", str(save)]
    monkeypatch.setattr(MinicnnEngine, "step", step)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(words[1:]) == 0
    assert "Resuming" in out.getvalue()
    assert_same_run(whole.save, save)


@pytest.mark.parametrize(("engine", "model"), CASES)
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(mnist_dir, tmp_path, engine, model):
    if engine == "torch":
        torch = pytest.importorskip("torch")
    cfg = config(mnist_dir, tmp_path, "nan", engine, model, epochs=3)
    good = {}

    def poison(info) -> None:
        if (info.epoch, info.batch) == (2, 2):
            good["main"] = open(cfg.save, "rb").read()
            last = info.engine.model.fc if model == "cnn" else info.engine.model.fc2
            weight = last.weight
            if engine == "torch":
                with torch.no_grad():
                    weight.fill_(float("nan"))
            else:
                weight.data[...] = np.nan

    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2, batch 3") as diverged:
        quiet(train, cfg, on_batch=poison)
    assert "last good checkpoint" in str(diverged.value) and "end of epoch 1" in str(diverged.value)
    assert open(cfg.save, "rb").read() == good["main"]
    assert load_checkpoint(cfg.save).epoch == 1


def test_resume_with_other_options_is_refused(straight, mnist_dir, tmp_path):
    whole, _ = straight("minicnn", "cnn")
    other = config(mnist_dir, tmp_path, "other", "minicnn", "cnn", lr=0.01, resume=whole.save)
    with pytest.raises(ValueError, match="--lr 0.001, this run asks for 0.01"):
        quiet(train, other)


@pytest.mark.parametrize("engine", ["minicnn", "torch"])
def test_weights_overflowed_by_an_epochs_last_step_are_not_saved(mnist_dir, tmp_path, engine):
    # the loss is computed before the step, so only a check of the weights sees this step's
    # damage before the epoch's checkpoint is written
    if engine == "torch":
        torch = pytest.importorskip("torch")
    cfg = config(mnist_dir, tmp_path, "inf", engine, "cnn", epochs=3)
    good = {}

    def overflow(info) -> None:
        if (info.epoch, info.batch) == (2, 6):
            good["main"] = open(cfg.save, "rb").read()
            if engine == "torch":
                with torch.no_grad():
                    info.engine.model.fc.bias.fill_(float("inf"))
            else:
                info.engine.model.fc.bias.data[...] = np.inf

    with pytest.raises(
        TrainingDiverged, match=r"weights hold NaN or infinity after epoch 2, batch 6"
    ):
        quiet(train, cfg, on_batch=overflow)
    assert open(cfg.save, "rb").read() == good["main"]
    assert load_checkpoint(cfg.save).epoch == 1


def test_an_lr_that_overflows_the_dtype_is_refused(mnist_dir, tmp_path):
    with pytest.raises(ValueError, match=r"--lr 1e\+39: expected at most 3.40282e\+38 \(float32\)"):
        config(mnist_dir, tmp_path, "lr", "minicnn", "cnn", lr=1e39)
    config(mnist_dir, tmp_path, "lr", "minicnn", "cnn", lr=1e39, dtype="float64")


def test_a_second_run_on_the_same_checkpoint_is_refused(mnist_dir, tmp_path):
    cfg = config(mnist_dir, tmp_path, "both", "minicnn", "cnn", epochs=1)
    second = {}

    def start_another(info) -> None:
        if info.batch == 1:
            with pytest.raises(ValueError, match="another training run is writing") as refused:
                quiet(train, cfg)
            second["refused"] = refused

    quiet(train, cfg, on_batch=start_another)
    assert "refused" in second and load_checkpoint(cfg.save).epoch == 1
    lines = (tmp_path / "both.metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one epoch and the accuracy, written once


def forge(path, **changes) -> None:
    """Rewrite the checkpoint's metadata fields (JSON values) and recompute its checksum, as an
    attacker who read minicnn's source would."""
    meta = st.load_metadata(path)
    for key, value in changes.items():
        if key == "optimizer_edit":
            info = json.loads(meta["optimizer"])
            value(info)
            meta["optimizer"] = json.dumps(info)
        else:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    meta["checksum"] = checkpoint_module._checksum(st.load_file(path), meta)
    st.save_file(st.load_file(path), path, meta)


FORGERIES = {
    "metrics not objects": dict(metrics=[1, 2]),
    "partial without batch": dict(metrics=[{"partial": True}]),
    "partial batch a string": dict(metrics=[{"partial": True, "batch": "x", "cost_sum": 1}]),
    "epoch 10**30": dict(epoch=10**30, step=10**30 * 6),
    "more epochs than asked": dict(epoch=5, step=30),
    "rng state not a state": dict(rng_state={"default": 1}),
    "rng state with a bad key": dict(
        rng_state={"default": {"bit_generator": "MT19937", "state": {"key": "x", "pos": 0}}}
    ),
    "rng state's state a number": dict(
        rng_state={"default": {"bit_generator": "MT19937", "state": 5}}
    ),
    "model kwargs unknown": dict(model_kwargs={"nonsense": 1}),
    "config nested deeply": dict(config="[" * 100_000 + "]" * 100_000),
    "lr a string": dict(optimizer_edit=lambda o: o["param_groups"][0].update(lr="x")),
    "step a list": dict(optimizer_edit=lambda o: o["scalar_state"]["0"].update(step=[1])),
    "no param groups": dict(optimizer_edit=lambda o: o.update(param_groups=[])),
    "params out of range": dict(optimizer_edit=lambda o: o["param_groups"][0].update(params=[99])),
    "moment of the wrong shape": dict(
        optimizer_edit=lambda o: o["arrays"]["state.0.exp_avg"].update(
            shape=[1], base64=base64.b64encode(bytes(4)).decode()
        )
    ),
}


@pytest.fixture(scope="module")
def one_epoch(mnist_dir, tmp_path_factory):
    cfg = config(mnist_dir, tmp_path_factory.mktemp("forged"), "one", "minicnn", "cnn", epochs=1)
    quiet(train, cfg)
    return cfg


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_checkpoint_is_a_one_line_error(one_epoch, tmp_path, forgery):
    path = tmp_path / "forged.safetensors"
    shutil.copyfile(one_epoch.save, path)
    forge(path, **FORGERIES[forgery])
    argv = shlex.split(
        train_command(dataclasses.replace(one_epoch, epochs=2, save=None), resume=path)
    )
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv[1:] + ["--metrics", str(tmp_path / "m.jsonl")])
    assert code == 1, err.getvalue()
    assert str(path) in err.getvalue() and "Traceback" not in err.getvalue()
