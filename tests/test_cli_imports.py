"""Commands that train nothing start without importing torch, opacus or scikit-learn's models:
each runs in a fresh interpreter, which then reports the heavy modules it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from miakit import pipeline
from miakit.config import load_config
from miakit.store import RunDir

HEAVY = ("torch", "opacus", "sklearn.neural_network", "sklearn.ensemble")

#: Runs the CLI in this interpreter, then prints which HEAVY modules it imported.
RUNNER = f"""
import json, sys
from miakit.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("HEAVY=" + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
sys.exit(code)
"""


def heavy_modules(*args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("HEAVY="))
    return json.loads(line.removeprefix("HEAVY="))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    config = load_config(
        None,
        ["split.num_models=4", "model.hidden=[8]", "train.epochs=1", "attacks=[loss, rmia]"],
    )
    pipeline.audit(config, RunDir(root))
    return root


@pytest.mark.parametrize(
    "args", [["--help"], ["datasets", "list"], ["models", "list"], ["audit", "--help"]]
)
def test_commands_that_need_no_run_import_no_torch(args):
    assert heavy_modules(*args) == []


@pytest.mark.parametrize("command", ["status", "attack", "evaluate", "report"])
def test_commands_on_a_trained_run_import_no_torch(tiny_run, command):
    assert heavy_modules(command, str(tiny_run)) == []
