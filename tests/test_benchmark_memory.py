"""benchmarks.memory on a tiny run: it reads this process's memory, measures one pair, and
reports growth only from the second epoch on (the benchmark itself is not part of the suite)."""

from __future__ import annotations

import json

from benchmarks import memory


def test_memory_readings_are_those_of_this_process():
    before = memory.memory_mib()
    ballast = bytearray(64 * 2**20)  # 64 MiB, touched page by page
    ballast[::4096] = b"\1" * len(ballast[::4096])
    after = memory.memory_mib()
    assert after["rss"] - before["rss"] >= 60, (before, after)
    assert after["hwm"] >= after["rss"] > 0
    del ballast


def test_growth_ignores_the_first_epoch_and_the_table_flags_a_leak():
    flat = [
        {"rss": 900.0, "hwm": 950.0},
        {"rss": 901.0, "hwm": 950.0},
        {"rss": 901.0, "hwm": 950.0},
    ]
    leaking = [
        {"rss": 100.0, "hwm": 100.0},
        {"rss": 110.0, "hwm": 110.0},
        {"rss": 120.0, "hwm": 120.0},
    ]
    assert memory.growth(flat) == 0.5 and memory.growth(leaking) == 10.0
    assert memory.growth(flat[:1]) is None
    runs = [
        {"model": "cnn", "engine": "minicnn", "records": flat},
        {"model": "deep", "engine": "torch", "records": leaking},
    ]
    rows = memory.table(runs, limit=2.0).splitlines()
    assert rows[2].endswith("| flat |") and "| 900.0 | 901.0 | 901.0 | 950.0 |" in rows[2]
    assert rows[3].endswith("| GROWS |") and "+10.00" in rows[3]


def test_one_tiny_run_end_to_end(mnist_dir, tmp_path, capsys):
    out = tmp_path / "memory.json"
    argv = [
        "--data-dir",
        str(mnist_dir),
        "--models",
        "cnn",
        "--engines",
        "minicnn",
        "--epochs",
        "2",
        "--images",
        "200",
        "--json",
        str(out),
    ]
    assert memory.main(argv) == 0
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert [r["epoch"] for r in run["records"]] == [1, 2]
    assert all(r["hwm"] >= r["rss"] > 0 and r["cost"] > 0 for r in run["records"])
    assert run["growth_mib_per_epoch"] == run["records"][1]["rss"] - run["records"][0]["rss"]
    assert "| cnn | minicnn |" in capsys.readouterr().out
