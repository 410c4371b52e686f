"""The benchmark harness on a tiny configuration: its record's structure, its validation, the
GPU script's CPU-only path and the FLOP counts. Nothing here asserts a speed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bits, flops, gpu, seeds, suite, timing, validate
from benchmarks.engines import SEED

TINY = [
    "--models",
    "cnn",
    "--batches",
    "2",
    "--numpy-batches",
    "2",
    "--repeats",
    "1",
    "--target-seconds",
    "0.005",
    "--layer-batch",
    "2",
    "--layer-steps",
    "1",
    "--thread-counts",
    "1",
    "--scaling-batches",
    "2",
    "--memory-batches",
    "2",
    "--skip-jit",
]


def test_suite_writes_the_expected_record(tmp_path):
    assert suite.main([*TINY, "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "latest.json").read_text())
    for key in (
        "schema",
        "machine",
        "settings",
        "validation",
        "throughput",
        "flops",
        "layers",
        "scaling",
        "memory",
        "jit",
        "ratios",
        "targets",
    ):
        assert key in record, key
    assert record["machine"]["cpu"] and record["machine"]["versions"]["numpy"]
    assert record["validation"]["cnn"]["minicnn-numba"]["ok"]
    engines = {row["engine"]: row for row in record["throughput"] if row["mode"] == "train"}
    assert set(engines) == {"minicnn-numpy", "minicnn-numba", "torch-cpu", "torch-cuda"}
    for name in ("minicnn-numpy", "minicnn-numba", "torch-cpu"):
        assert engines[name]["status"] == "measured"
        assert engines[name]["images_per_s"] > 0 and len(engines[name]["samples_s"]) == 1
    cuda = engines["torch-cuda"]
    assert cuda["status"] == "measured" or cuda["status"].startswith("not measured")
    layers = record["layers"]["cnn"]["engines"]
    assert [r["name"] for r in layers["minicnn-numba"]["rows"]] == [
        r["name"] for r in layers["torch-cpu"]["rows"]
    ]
    assert {r["engine"] for r in record["memory"]} == {"minicnn-numba", "torch-cpu"}
    assert all(r["peak_rss_mib"] > 0 for r in record["memory"])
    assert record["jit"] == {"status": "skipped"}
    assert {t["name"].split(",")[0] for t in record["targets"]} >= {"CNN training"}
    markdown = (tmp_path / "latest.md").read_text()
    assert "## Targets" in markdown and "| CNN | **" not in markdown  # no batch 100 here
    assert (tmp_path / "latest.png").stat().st_size > 0


def test_validation_catches_a_wrong_weight():
    import minicnn
    from minicnn.models import CNN
    from reference.convert import copy_to_torch
    from reference.models import CNN as TorchCNN

    rng = np.random.default_rng(0)
    X = rng.random((4, 1, 28, 28), dtype=np.float32)  # (4, 1, 28, 28)
    Y = rng.integers(0, 10, size=4)  # (4,)
    minicnn.manual_seed(SEED)
    model = CNN()
    torch_model = copy_to_torch(model, TorchCNN())
    assert validate.compare(model, torch_model, X, Y)["ok"]
    model.layer2[0].weight.data[0, 0, 0, 0] += 0.05
    with pytest.raises(validate.ValidationError, match="minicnn-numba disagrees"):
        validate.compare(model, torch_model, X, Y)


def test_gpu_script_runs_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.delenv("MINICNN_DATA", raising=False)  # random data, whatever the suite is given
    args = [
        "--models",
        "cnn",
        "--batches",
        "2",
        "--repeats",
        "1",
        "--target-seconds",
        "0.005",
        "--images",
        "8",
        "--out",
        str(tmp_path),
    ]
    assert gpu.main(args) == 0
    record = json.loads((tmp_path / "gpu.json").read_text())
    cuda = [r for r in record["rows"] if r["engine"] == "torch-cuda"]
    assert cuda and all(r["status"] in ("measured",) or "not measured" in r["status"] for r in cuda)
    assert "random data" in record["data"]
    assert "| CNN | train | 2 |" in (tmp_path / "gpu.md").read_text()


def test_flops_of_the_cnn():
    layers = {layer.name: layer for layer in flops.count("cnn")}
    assert layers["layer1.0"].forward_macs == 32 * 1 * 9 * 28 * 28
    assert layers["layer1.0"].input_grad_macs == 0  # the images need no gradient
    assert layers["layer2.0"].forward_macs == 64 * 32 * 9 * 14 * 14
    assert layers["layer2.0"].backward_macs == 2 * layers["layer2.0"].forward_macs
    assert layers["fc"].forward_macs == 3136 * 10
    assert layers["layer1.1"].forward_macs == 0  # ReLU


def test_seed_table_gives_each_engines_spread():
    rows = [
        {"model": "cnn", "engine": engine, "seed": seed, "accuracy": accuracy}
        for engine, seed, accuracy in [
            ("minicnn", 1, 0.9890),
            ("minicnn", 2, 0.9902),
            ("torch", 1, 0.9897),
            ("torch", 2, 0.9885),
        ]
    ]
    lines = seeds.table(rows, ["minicnn", "torch"]).splitlines()
    assert lines[2:] == [
        "| cnn | 1 | 0.9890 | 0.9897 |",
        "| cnn | 2 | 0.9902 | 0.9885 |",
        "| cnn | *mean* | 0.9896 | 0.9891 |",
        "| cnn | *lowest* | 0.9890 | 0.9885 |",
        "| cnn | *highest* | 0.9902 | 0.9897 |",
    ]


class _CountingRunner:
    """A runner that records its calls and reports a fixed time per step."""

    def __init__(self, engine: str, calls: list) -> None:
        self.engine, self.batch, self.calls = engine, 4, calls

    def run(self, mode: str, steps: int) -> float:
        self.calls.append((self.engine, steps))
        return 0.001 * steps


def test_each_timed_sample_follows_an_untimed_step_of_its_engine():
    """Engines take turns; the step that switches from one to the other is not timed."""
    calls: list = []
    runners = [_CountingRunner("a", calls), _CountingRunner("b", calls)]
    found = timing.measure(runners, "train", repeats=3, target_s=0.01, warmup=2)
    samples = calls[6:]  # after 2 warm-up and 2 calibration steps of each
    assert samples == [
        ("a", 1),
        ("a", 10),
        ("b", 1),
        ("b", 10),
        ("b", 1),
        ("b", 10),
        ("a", 1),
        ("a", 10),
        ("a", 1),
        ("a", 10),
        ("b", 1),
        ("b", 10),
    ]
    assert found["a"]["step_s"] == pytest.approx(0.001)


def test_bits_hash_is_repeatable_and_moves_with_the_weights(mnist_dir):
    first = bits.run("cnn", 2, str(mnist_dir), threads=1)
    assert first == bits.run("cnn", 2, str(mnist_dir), threads=1)
    assert len(first[0]) == 16 and np.isfinite(first[1])
    assert bits.run("cnn", 3, str(mnist_dir), threads=1)[0] != first[0]
