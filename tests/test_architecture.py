"""The layout docs/architecture.md draws: what it names exists, imports run one way without a
circle (imports inside functions counted), importing minicnn changes nothing in the process, and
the tree is as the formatter leaves it."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("minicnn", "reference")


def _modules() -> dict[str, Path]:
    """Every module of minicnn and reference by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _import_graph() -> dict[str, set[str]]:
    """module → the project's modules it imports anywhere in its source: at the top, inside
    functions, under ``if TYPE_CHECKING``. ``from package import name`` counts as importing the
    submodule ``package.name`` where there is one, else the package."""
    modules = _modules()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[module] = {t for t in map(known, targets) if t is not None and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), package → child edges
    included: a package re-exporting a child that imports the package back is a circle too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return groups


def test_no_import_circles():
    graph = _import_graph()
    assert len(graph) > 50, sorted(graph)  # the walk found the project
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# what each part of the library may import: only the parts listed (and itself)
LIBRARY = {
    "minicnn.kernels": set(),
    "minicnn.functional": {"minicnn.kernels", "minicnn.random"},
    "minicnn.nn": {"minicnn.kernels", "minicnn.functional", "minicnn.init", "minicnn.random"},
    "minicnn.optim": {"minicnn.kernels", "minicnn.nn"},
}


def _part(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("part", sorted(LIBRARY))
def test_library_tiers_import_only_downwards(part):
    allowed = LIBRARY[part] | {part}
    wrong = {
        (module, target)
        for module, targets in _import_graph().items()
        if _part(module) == part
        for target in targets
        if _part(target) not in allowed
    }
    assert wrong == set()


def test_torch_engine_is_reached_by_one_lazy_import():
    importers = {m for m, targets in _import_graph().items() if "reference.engine" in targets}
    assert importers == {"minicnn.train.loop"}
    source = (ROOT / "minicnn/train/loop.py").read_text(encoding="utf-8")
    top_level = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reference")
    ]
    assert top_level == [], "minicnn.train.loop imports reference at the top"


def test_at_most_eight_python_files_directly_in_minicnn():
    files = sorted(p.name for p in (ROOT / "minicnn").glob("*.py"))
    assert len(files) <= 8, files


def test_no_formatter_exemptions_and_the_tree_is_formatted():
    skips = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("minicnn", "reference", "tests", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"#\s*fmt:\s*(skip|off)", line) and path.name != Path(__file__).name
    ]
    assert skips == []
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed: pip install -e '.[dev]'"
    result = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


_PROBE = """
import json, signal, sys
import numpy, threadpoolctl
def blas():
    return sorted((i["internal_api"], i["num_threads"]) for i in threadpoolctl.threadpool_info())
before, handler = blas(), signal.getsignal(signal.SIGINT)
import minicnn, minicnn.cli, minicnn.train, minicnn.teach.show, minicnn.io.checkpoint
from minicnn.kernels.runtime import process
imported = blas()
if sys.argv[1] == "decline":
    process.configure(single_threaded_blas=False)
x, w = numpy.ones((2, 1, 8, 8), numpy.float32), numpy.ones((4, 1, 3, 3), numpy.float32)
minicnn.functional.conv2d(x, w)
print(json.dumps({"before": before, "imported": imported, "ran": blas(),
                  "sigint_kept": signal.getsignal(signal.SIGINT) is handler,
                  "applied": process.applied()}))
"""


def _probe(mode: str) -> dict:
    env = {"OPENBLAS_NUM_THREADS": "2", "MINICNN_BACKEND": "numba"}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_minicnn_changes_no_blas_threads_and_no_signal_handler():
    seen = _probe("default")
    openblas = [count for api, count in seen["before"] if api == "openblas"]
    assert openblas == [2], seen  # NumPy's OpenBLAS, on the two threads asked for
    assert seen["imported"] == seen["before"]
    assert seen["sigint_kept"]
    # the fast kernels' first run applies what they need
    assert [count for api, count in seen["ran"] if api == "openblas"] == [1]
    assert seen["applied"]["single_threaded_blas"] is True


def test_a_user_can_keep_numpys_blas_threads():
    seen = _probe("decline")
    assert seen["ran"] == seen["before"], seen
    assert seen["applied"]["single_threaded_blas"] is False


# -- docs/architecture.md ------------------------------------------------------------------

DOC = ROOT / "docs" / "architecture.md"


def _named_functions() -> list[str]:
    """Every ``minicnn.…`` or ``reference.…`` dotted name in backticks on the page."""
    names = re.findall(r"`((?:minicnn|reference)(?:\.\w+)+)`", DOC.read_text(encoding="utf-8"))
    return sorted(set(names))


def _resolve(name: str):
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(name)


def test_what_runs_table_names_the_ops_of_both_backends():
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## What runs") : text.index("## How a training step flows")]
    numpy_twins = set(re.findall(r"`(minicnn\.kernels\.[\w.]+_numpy)`", table))
    fast = set(re.findall(r"`(minicnn\.kernels\.[\w.]+_numba)`", table))
    assert len(numpy_twins) >= 19 and len(fast) >= 19
    assert {name.removesuffix("_numpy") for name in numpy_twins} >= {
        name.removesuffix("_numba") for name in fast
    }


@pytest.mark.parametrize("name", _named_functions())
def test_every_name_on_the_architecture_page_exists(name):
    assert _resolve(name) is not None
