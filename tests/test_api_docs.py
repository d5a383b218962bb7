"""Documentation that cannot rot: the README's Python quick start and the example notebooks run,
and the API reference builds from the docstrings without a warning or a broken reference."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}


def test_the_readmes_quick_start_runs(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks, "the README has no python block"
    assert len(blocks[0].strip().splitlines()) <= 15  # the quick start's promise
    for block in blocks:
        done = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert "Strongest attack:" in done.stdout and "tpr@fpr=0.01" in done.stdout


def test_there_are_the_two_example_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["audit_sklearn.ipynb", "score_logits.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_example_notebook_runs(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    for key, value in environment().items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # CellExecutionError on the first cell that raises
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
    if path.stem == "audit_sklearn":
        shown = notebook.cells[1]["outputs"][-1]["data"]
        assert "Strongest attack:" in shown["text/html"] and "data:image/png" in shown["text/html"]


def test_the_api_reference_builds_without_warnings_or_broken_references(tmp_path):
    """What `make docs` runs (docs/build.py: pdoc on the public module), in a fresh process."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build.py"), str(tmp_path)],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (tmp_path / "miakit.html").read_text()
    for name in ("score", "evaluate", "attacks", "Run", "audit", "MiakitError", "Verdict"):
        assert f'id="{name}"' in page, name
