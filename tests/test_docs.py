"""The docs are executed: every ```python block of each page in docs/ runs, in order, in one
namespace per page, from an empty directory with MINICNN_DATA set. Every relative link in the
docs and the README leads to a file, and the README's pasted ``minicnn summary --model deep``
is what the command prints now."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import minicnn
from minicnn import random
from tests.test_cli import run

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
OP_PAGES = ["conv2d", "pooling", "relu", "linear", "dropout", "cross_entropy", "adam"]
PYTHON = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block on the page."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m[1]) for m in PYTHON.finditer(text)]


def test_every_page_the_docs_promise_is_there_and_runs_code():
    names = {page.relative_to(DOCS).as_posix() for page in PAGES}
    expected = {"tutorial.md", *(f"ops/{op}.md" for op in OP_PAGES)}
    assert expected <= names
    for name in expected:
        assert len(python_blocks(DOCS / name)) >= 2, name


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(DOCS).as_posix())
def test_page_runs(page, mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINICNN_DATA", str(mnist_dir))
    state, backend = random.get_state(), minicnn.get_backend()
    namespace = {"__name__": f"docs.{page.stem}"}
    try:
        for line, code in python_blocks(page):
            # padded so that a traceback names the line of the Markdown file
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
    finally:
        random.set_state(state)
        minicnn.set_backend(backend)


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=lambda page: page.name)
def test_relative_links_lead_to_files(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        assert (page.parent / target.split("#")[0]).exists(), f"{page.name}: {target}"


def test_the_readme_links_the_tutorial_and_every_op_page():
    links = set(LINK.findall((ROOT / "README.md").read_text(encoding="utf-8")))
    assert "docs/tutorial.md" in links
    assert {f"docs/ops/{op}.md" for op in OP_PAGES} <= links


def test_the_readme_shows_what_minicnn_summary_prints_now():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pasted = re.search(
        r"^```text\n\$ minicnn summary --model deep\n(.*?)^```$", readme, re.M | re.S
    )
    assert pasted, "README.md lacks a ```text block starting '$ minicnn summary --model deep'"
    code, out, _ = run(["summary", "--model", "deep"])
    assert code == 0
    assert pasted[1] == out, "README.md's summary output is stale: paste the command's output"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_deck_map_links_every_tutorial_section_and_only_real_ones():
    text = (DOCS / "tutorial.md").read_text(encoding="utf-8")
    tutorial = re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S)  # code comments are no headings
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", tutorial, re.M)}
    linked = {
        target.split("#", 1)[1]
        for target in LINK.findall((DOCS / "deck-map.md").read_text(encoding="utf-8"))
        if target.startswith("tutorial.md#")
    }
    assert linked <= anchors, f"deck-map.md links sections the tutorial lacks: {linked - anchors}"
    assert anchors <= linked, f"deck-map.md leaves out tutorial sections: {anchors - linked}"
