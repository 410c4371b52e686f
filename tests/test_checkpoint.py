"""minicnn.io.checkpoint: exact resume, torch interop both ways, a clear error for every fault."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

import minicnn
from minicnn import random as mrandom
from minicnn.io import checkpoint
from minicnn.io import safetensors as st
from minicnn.io.checkpoint import (
    load_checkpoint,
    load_model,
    load_weights,
    restore_rng_state,
    save_checkpoint,
    sidecar_path,
)
from minicnn.models import MODELS
from minicnn.optim import SGD, Adam, AdamW
from reference import models as reference

NAMES = ["cnn", "deep"]


def make_model(name: str, dtype=np.float32, seed: int = 0):
    return MODELS[name](dtype=dtype, generator=np.random.default_rng(seed))


def make_torch(name: str) -> torch.nn.Module:
    return {"cnn": reference.CNN, "deep": reference.DeepCNN}[name]().double().eval()


def assert_logits_match(model, torch_model) -> None:
    """Same logits in float64, within 1e-10 of the largest logit, both in eval mode."""
    x = np.random.default_rng(5).standard_normal((4, 1, 28, 28))  # (N, C, H, W) float64
    model.eval()
    torch_model.eval()
    ours = model(x)  # (N, 10)
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(x)).numpy()  # (N, 10)
    assert ours.dtype == theirs.dtype == np.float64
    assert np.abs(ours - theirs).max() <= 1e-10 * np.abs(theirs).max()


def assert_same_arrays(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for key, array in expected.items():
        assert actual[key].dtype == array.dtype and actual[key].shape == array.shape, key
        assert actual[key].tobytes() == array.tobytes(), key


@dataclasses.dataclass
class Config:
    lr: float = 0.01
    batch_size: int = 100


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(tmp_path, name, dtype):
    model = make_model(name, dtype)
    path = tmp_path / "ckpt.safetensors"
    metrics = [{"epoch": 1, "loss": 0.25, "accuracy": 0.9}]
    assert (
        save_checkpoint(
            path, model, model_name=name, epoch=2, step=600, config=Config(), metrics=metrics
        )
        == path
    )
    ckpt = load_checkpoint(path)
    assert_same_arrays(ckpt.state_dict, model.state_dict())
    assert (ckpt.model_name, ckpt.dtype, ckpt.epoch, ckpt.step) == (name, np.dtype(dtype), 2, 600)
    assert ckpt.config == {"lr": 0.01, "batch_size": 100} and ckpt.metrics == metrics
    assert ckpt.optimizer_name is None and ckpt.optimizer_state is None
    assert not sidecar_path(path).exists()

    before = mrandom.get_state()
    loaded = load_model(path)
    assert mrandom.get_state() == before  # building the model drew nothing from the default
    assert type(loaded) is MODELS[name]
    assert_same_arrays(loaded.state_dict(), model.state_dict())


def test_file_layout(tmp_path):
    model = make_model("deep")
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, model_name="deep", optimizer=SGD(model.parameters(), lr=0.1))
    assert list(st.load_file(path)) != [] and set(st.load_file(path)) == set(model.state_dict())
    meta = st.load_metadata(path)
    assert meta["format"] == "pt" and meta["checkpoint_format"] == "minicnn.io.checkpoint"
    assert {
        "model_name",
        "dtype",
        "epoch",
        "step",
        "config",
        "rng_state",
        "metrics",
        "optimizer",
        "checksum",
        "checkpoint_version",
    } <= set(meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]  # one file


def test_saving_over_a_version_1_checkpoint_removes_its_optimizer_file(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    sidecar_path(path).write_bytes(b"an old optimizer file")
    save_checkpoint(path, make_model("cnn"), model_name="cnn")
    assert not sidecar_path(path).exists()


def test_version_1_checkpoint_loads_its_weights_but_cannot_resume(with_optimizer):
    path = with_optimizer[0]
    meta = st.load_metadata(path)
    meta["checkpoint_version"] = "1"
    meta["checksum"] = checkpoint._checksum(st.load_file(path), meta)
    rewrite(path, metadata=lambda m: meta)
    loaded = load_checkpoint(path)
    assert loaded.optimizer_state is None and loaded.epoch == 0
    load_model(path)


# -- torch interop -------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_minicnn_checkpoint_loads_into_torch(tmp_path, name):
    model = make_model(name, np.float64)
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, model_name=name, optimizer=Adam(model.parameters()))
    torch_model = make_torch(name)
    torch_model.load_state_dict(safetensors.torch.load_file(str(path)), strict=True)
    assert_logits_match(model, torch_model)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("writer", ["save_file", "save_model"])
def test_torch_weights_load_into_minicnn(tmp_path, name, writer):
    torch.manual_seed(0)
    torch_model = make_torch(name)
    path = tmp_path / "torch.safetensors"
    if writer == "save_file":  # torch refuses shared tensors here, so they are cloned
        state = {key: value.clone() for key, value in torch_model.state_dict().items()}
        safetensors.torch.save_file(state, str(path))
    else:  # save_model keeps one name of each shared tensor
        safetensors.torch.save_model(torch_model, str(path))
    model = load_weights(path, make_model(name, np.float32))
    assert next(iter(model.parameters())).dtype == np.float64
    assert_logits_match(model, torch_model)
    with pytest.raises(ValueError, match="not a minicnn checkpoint"):
        load_checkpoint(path)


def test_load_weights_errors(tmp_path):
    path = tmp_path / "w.safetensors"
    state = dict(make_model("cnn").state_dict())
    st.save_file({**state, "extra.weight": np.zeros(2, np.float32)}, path)
    with pytest.raises(ValueError, match="unexpected \\['extra.weight'\\]"):
        load_weights(path, make_model("cnn"))
    st.save_file({**state, "fc.bias": np.zeros(11, np.float32)}, path)
    with pytest.raises(ValueError, match=r"'fc.bias' has shape \(11,\), CNN expects \(10,\)"):
        load_weights(path, make_model("cnn"))
    st.save_file({**state, "fc.bias": np.zeros(10, np.int64)}, path)
    with pytest.raises(ValueError, match="'fc.bias' has dtype int64"):
        load_weights(path, make_model("cnn"))
    with pytest.raises(ValueError, match="keys do not match DeepCNN"):
        load_weights(path, make_model("deep"))
    deep = dict(make_model("deep").state_dict())
    st.save_file({**deep, "layer4.0.bias": deep["fc1.bias"] + 1}, path)
    with pytest.raises(ValueError, match="'fc1.bias' and 'layer4.0.bias' are one parameter"):
        load_weights(path, make_model("deep"))


# -- validation ----------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    model = make_model("deep")
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, model_name="deep", epoch=3, config={"lr": 0.1})
    return path


def rewrite(path, tensors=lambda t: t, metadata=lambda m: m) -> None:
    st.save_file(tensors(st.load_file(path)), path, metadata(st.load_metadata(path)))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing.safetensors")


def test_truncated_file(saved):
    raw = saved.read_bytes()
    for cut in (5, 100, len(raw) // 2, len(raw) - 1):
        saved.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match=str(saved)):
            load_checkpoint(saved)


@pytest.mark.parametrize(
    "old, new, message",
    [
        (b'"epoch":"3"', b'"epoch":"4"', "checksum mismatch"),
        (b'"dtype":"F32"', b'"dtype":"F3X"', "unknown or unsupported dtype"),
        (b'"fc2.bias":{', b'"fc2.bias":[', "not valid JSON"),
        (b'"model_name":"deep"', b'"model_name":"dee\xff"', "not valid UTF-8"),
    ],
)
def test_tampered_header(saved, old, new, message):
    raw = saved.read_bytes()
    assert old in raw
    saved.write_bytes(raw.replace(old, new, 1))
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value)


def test_tampered_weights(saved):
    raw = bytearray(saved.read_bytes())
    raw[-3] ^= 0x01
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_checkpoint(saved)


def renamed(t):
    t["fc2.weights"] = t.pop("fc2.weight")
    return t


FAULTS = {
    "wrong key": ({"tensors": renamed}, r"missing \['fc2.weight'\], unexpected \['fc2.weights'\]"),
    "wrong shape": (
        {"tensors": lambda t: {**t, "fc2.bias": np.zeros(9, np.float32)}},
        r"'fc2.bias' has shape \(9,\), DeepCNN expects \(10,\)",
    ),
    "wrong dtype": (
        {"tensors": lambda t: {**t, "fc2.bias": t["fc2.bias"].astype(np.float64)}},
        "'fc2.bias' has dtype float64, expected float32",
    ),
    "split alias": (
        {"tensors": lambda t: {**t, "layer4.0.bias": t["fc1.bias"] + 1}},
        "'fc1.bias' and 'layer4.0.bias' are one parameter of DeepCNN",
    ),
    "no format": ({"metadata": lambda m: {}}, "not a minicnn checkpoint"),
    "version": ({"metadata": lambda m: {**m, "checkpoint_version": "9"}}, "version '9'"),
    "model name": ({"metadata": lambda m: {**m, "model_name": "vgg"}}, "unknown model_name 'vgg'"),
    "dtype name": ({"metadata": lambda m: {**m, "dtype": "int8"}}, "neither float32 nor"),
    "lacks key": (
        {"metadata": lambda m: {k: v for k, v in m.items() if k != "step"}},
        "lacks 'step'",
    ),
    "bad json": ({"metadata": lambda m: {**m, "config": "{lr: 1"}}, "'config' is not valid JSON"),
    "json type": ({"metadata": lambda m: {**m, "metrics": "{}"}}, "'metrics' must be a JSON list"),
    "epoch": ({"metadata": lambda m: {**m, "epoch": "-1"}}, "'epoch' must be an int from 0 to"),
    "kwargs": ({"metadata": lambda m: {**m, "model_kwargs": '{"width": 3}'}}, "cannot build"),
    "checksum": ({"metadata": lambda m: {**m, "step": "7"}}, "checksum mismatch"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_inconsistent_checkpoint(saved, fault):
    edits, message = FAULTS[fault]
    rewrite(saved, **edits)
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value)


def test_save_rejects_bad_arguments(tmp_path):
    model = make_model("cnn")
    path = tmp_path / "c.safetensors"
    with pytest.raises(ValueError, match="does not name a CNN"):
        save_checkpoint(path, model, model_name="deep")
    with pytest.raises(ValueError, match="epoch must be an int"):
        save_checkpoint(path, model, model_name="cnn", epoch=-1)
    with pytest.raises(TypeError, match="config holds a object"):
        save_checkpoint(path, model, model_name="cnn", config={"x": object()})
    assert list(tmp_path.iterdir()) == []


# -- optimizer state -----------------------------------------------------------------------

OPTIMIZERS = {
    "adam": lambda params: Adam(params, lr=1e-3),
    "sgd-momentum": lambda params: SGD(params, lr=0.1, momentum=0.9, nesterov=True),
    "adamw-amsgrad": lambda params: AdamW(params, lr=1e-3, amsgrad=True),
}


def train_steps(model, optimizer, gradients) -> None:
    for grads in gradients:
        for param, grad in zip(model.parameters(), grads, strict=True):
            param.grad = None if grad is None else grad.copy()
        optimizer.step()


def assert_same_optimizer_state(actual: dict, expected: dict) -> None:
    assert actual["param_groups"] == expected["param_groups"]
    assert set(actual["state"]) == set(expected["state"])
    for index, buffers in expected["state"].items():
        assert set(actual["state"][index]) == set(buffers)
        for key, value in buffers.items():
            got = actual["state"][index][key]
            assert type(got) is type(value), (index, key)
            if isinstance(value, np.ndarray):
                assert got.dtype == value.dtype and got.tobytes() == value.tobytes()
            else:
                assert got == value


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_optimizer_resumes_bit_identically(tmp_path, kind):
    model = make_model("cnn")
    optimizer = OPTIMIZERS[kind](model.parameters())
    rng = np.random.default_rng(1)
    gradients = [
        [rng.standard_normal(p.shape).astype(np.float32) for p in model.parameters()]
        for _ in range(6)
    ]
    gradients[0][1] = None  # the bias of layer1 misses a step, so its step count differs
    train_steps(model, optimizer, gradients[:3])

    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, model_name="cnn", optimizer=optimizer, step=3)
    ckpt = load_checkpoint(path)
    assert ckpt.optimizer_name == type(optimizer).__name__
    assert_same_optimizer_state(ckpt.optimizer_state, optimizer.state_dict())

    resumed = load_model(path)
    resumed_optimizer = OPTIMIZERS[kind](resumed.parameters())
    resumed_optimizer.load_state_dict(ckpt.optimizer_state)
    train_steps(model, optimizer, gradients[3:])
    train_steps(resumed, resumed_optimizer, gradients[3:])
    assert_same_arrays(resumed.state_dict(), model.state_dict())


@pytest.fixture
def with_optimizer(tmp_path):
    model = make_model("cnn")
    optimizer = Adam(model.parameters())
    gradient = [np.ones(p.shape, np.float32) for p in model.parameters()]
    paths = []
    for name in ("a", "b"):
        train_steps(model, optimizer, [gradient])
        paths.append(tmp_path / name / "ckpt.safetensors")
        paths[-1].parent.mkdir()
        save_checkpoint(paths[-1], model, model_name="cnn", optimizer=optimizer)
    return paths


def test_optimizer_state_round_trips_in_the_one_file(with_optimizer):
    first, second = with_optimizer
    a, b = load_checkpoint(first), load_checkpoint(second)
    assert a.optimizer_name == "Adam" and a.optimizer_state["state"][0]["step"] == 1
    assert b.optimizer_state["state"][0]["step"] == 2
    assert sorted(p.name for p in first.parent.iterdir()) == ["ckpt.safetensors"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda o: o["arrays"]["state.0.exp_avg"].update(base64="not base64!"),
        lambda o: o["arrays"]["state.0.exp_avg"].update(shape=[3]),
        lambda o: o["arrays"]["state.0.exp_avg"].update(dtype="I64"),
        lambda o: o["arrays"].update({"exp_avg": o["arrays"]["state.0.exp_avg"]}),
        lambda o: o["arrays"].update({"state.99.exp_avg": o["arrays"]["state.0.exp_avg"]}),
        lambda o: o.update(arrays=[]),
    ],
)
def test_forged_optimizer_arrays_are_refused(with_optimizer, edit):
    first, _ = with_optimizer
    meta = st.load_metadata(first)
    info = json.loads(meta["optimizer"])
    edit(info)
    meta["optimizer"] = json.dumps(info)
    meta["checksum"] = checkpoint._checksum(st.load_file(first), meta)  # a consistent forgery
    rewrite(first, metadata=lambda m: meta)
    with pytest.raises(ValueError, match=f"{first}: .*optimizer"):
        load_checkpoint(first)
    load_model(first)  # the weights need no optimizer state


# -- random state --------------------------------------------------------------------------


def test_rng_state_round_trip(tmp_path):
    minicnn.manual_seed(123)
    mrandom.default_generator().random(5)
    loader = np.random.default_rng(7)
    loader.random(3)
    model = make_model("deep")
    model.layer4[2].generator = None  # Dropout draws its masks from the default generator
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, model_name="deep", rng_state={"loader": mrandom.get_state(loader)})

    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    expected = (mrandom.default_generator().random(10), loader.random(10), model.train()(x))
    minicnn.manual_seed(999)
    other_loader = np.random.default_rng(0)
    ckpt = load_checkpoint(path)
    restore_rng_state(ckpt.rng_state, {"loader": other_loader})
    got = (mrandom.default_generator().random(10), other_loader.random(10), model(x))
    for a, b in zip(got, expected, strict=True):
        assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="no saved state for generator 'data'"):
        restore_rng_state(ckpt.rng_state, {"data": other_loader})


# -- crashes, concurrent readers, diverged models --------------------------------------------

SAVE_FOREVER = """
import itertools, sys
import numpy as np
from minicnn.io.checkpoint import save_checkpoint
from minicnn.models import CNN
from minicnn.optim import Adam

model = CNN(generator=np.random.default_rng(0))
optimizer = Adam(model.parameters())
for epoch in itertools.count(1):
    for param in model.parameters():
        param.grad = np.full_like(param.data, epoch)
    optimizer.step()
    save_checkpoint(sys.argv[1], model, model_name="cnn", optimizer=optimizer, epoch=epoch)
    if epoch == 1:
        print("saved", flush=True)
"""


def kill_during_saves(tmp_path, trials: int) -> None:
    """Kill -9 a process that saves in a loop, at a random instant, ``trials`` times: the path
    must hold a whole checkpoint whose optimizer state matches its epoch, every time."""
    path = tmp_path / "ckpt.safetensors"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    delays = np.random.default_rng(0).uniform(0.0, 0.2, trials)
    for delay in delays:
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVE_FOREVER, str(path)], env=env, stdout=subprocess.PIPE
        )
        try:
            assert saver.stdout.readline() == b"saved\n"
            time.sleep(delay)
        finally:
            saver.kill()
            saver.wait(timeout=60)
            saver.stdout.close()
        loaded = load_checkpoint(path)
        assert loaded.epoch >= 1 and loaded.optimizer_state["state"][0]["step"] == loaded.epoch
    save_checkpoint(path, load_model(path), model_name="cnn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]  # no .tmp left


def test_kill_9_during_saves_leaves_a_whole_checkpoint(tmp_path):
    kill_during_saves(tmp_path, trials=4)


@pytest.mark.slow
def test_kill_9_during_saves_leaves_a_whole_checkpoint_many_times(tmp_path):
    kill_during_saves(tmp_path, trials=25)


def test_reader_never_sees_a_half_written_save(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    model = make_model("cnn")
    optimizer = Adam(model.parameters())
    ones = [np.ones(p.shape, np.float32) for p in model.parameters()]
    train_steps(model, optimizer, [ones])
    save_checkpoint(path, model, model_name="cnn", optimizer=optimizer, epoch=1)
    stop, failures = threading.Event(), []

    def keep_saving() -> None:
        try:
            for epoch in itertools.count(2):
                if stop.is_set():
                    return
                train_steps(model, optimizer, [ones])
                save_checkpoint(path, model, model_name="cnn", optimizer=optimizer, epoch=epoch)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    writer = threading.Thread(target=keep_saving)
    writer.start()
    try:
        for _ in range(150):
            loaded = load_checkpoint(path)
            assert loaded.optimizer_state["state"][0]["step"] == loaded.epoch
    finally:
        stop.set()
        writer.join()
    assert failures == []


def test_non_finite_weights_or_optimizer_state_are_not_saved(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    model = make_model("cnn")
    optimizer = Adam(model.parameters())
    save_checkpoint(path, model, model_name="cnn", optimizer=optimizer)
    good = path.read_bytes()
    model.fc.weight.data[0, 0] = np.inf
    with pytest.raises(ValueError, match="the model holds NaN or infinity in 'fc.weight'"):
        save_checkpoint(path, model, model_name="cnn", optimizer=optimizer)
    model.fc.weight.data[0, 0] = 0.0
    train_steps(model, optimizer, [[np.ones(p.shape, np.float32) for p in model.parameters()]])
    optimizer.state[model.fc.bias]["exp_avg_sq"][0] = np.nan
    with pytest.raises(ValueError, match="optimizer's state holds NaN"):
        save_checkpoint(path, model, model_name="cnn", optimizer=optimizer)
    assert path.read_bytes() == good


def test_saving_through_a_symlink_replaces_its_target(tmp_path):
    target, link = tmp_path / "real.safetensors", tmp_path / "link.safetensors"
    save_checkpoint(target, make_model("cnn"), model_name="cnn", epoch=1)
    link.symlink_to(target.name)
    save_checkpoint(link, make_model("cnn"), model_name="cnn", epoch=2)
    assert link.is_symlink() and load_checkpoint(target).epoch == 2


def test_torch_loads_a_checkpoint_with_adam_state_strict(tmp_path):
    model = make_model("deep")
    optimizer = Adam(model.parameters())
    train_steps(model, optimizer, [[np.ones(p.shape, np.float32) for p in model.parameters()]])
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, model_name="deep", optimizer=optimizer)
    reference.DeepCNN().load_state_dict(safetensors.torch.load_file(path), strict=True)
