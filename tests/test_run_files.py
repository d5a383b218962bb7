"""The run directory's files: they follow the umask, a changed config says what it redoes and
removes models no longer planned, and an audit killed inside an atomic write resumes to the
same results."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from miakit import pipeline, store
from miakit.config import load_config
from miakit.store import RunDir

TINY = ["split.num_models=4", "model.hidden=[8]", "train.epochs=2", "attacks=[loss, lira-online]"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    store._umask.cache_clear()
    try:
        run = RunDir(tmp_path / "run")
        pipeline.plan(load_config(None, TINY), run)
    finally:
        os.umask(old)
        store._umask.cache_clear()
    files = [p for p in run.root.rglob("*") if p.is_file()]
    assert files and {p.stat().st_mode & 0o777 for p in files} == {0o666 & ~umask}


def test_changed_config_says_what_it_redoes_and_removes_orphans(tmp_path):
    run = RunDir(tmp_path / "run")
    config = load_config(None, [*TINY, "split.num_models=6"])
    pipeline.train(pipeline.plan(config, run), run)
    said: list[str] = []
    more_epochs = load_config(None, [*TINY, "split.num_models=6", "train.epochs=3"])
    pipeline.plan(more_epochs, run, log=said.append)
    assert said == [f"{run.root} changes: train.epochs 2 → 3: 6 of 6 trained models retrain"]
    said.clear()
    pipeline.plan(config, run, log=said.append)  # back: nothing to retrain
    expected = "train.epochs 3 → 2: 0 of 6 trained models retrain; 6 are queried again"
    assert said == [f"{run.root} changes: {expected}"]  # trained, never queried
    said.clear()
    pipeline.plan(load_config(None, TINY), run, log=said.append)
    assert "split.num_models 6 → 4" in said[0] and "models 4–5 are removed" in said[0]
    assert sorted(p.name for p in (run.root / "models").iterdir()) == [
        "0000",
        "0001",
        "0002",
        "0003",
    ]
    said.clear()
    pipeline.plan(load_config(None, TINY), run, log=said.append)
    assert said == []


KILL = """
import os, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(sys.argv[1]):
        os._exit(9)  # as SIGKILL: the temporary file is fully written, never moved in place
    return real(src, dst, *args, **kwargs)
os.replace = replace
from miakit.cli import app
app(sys.argv[2:])
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = RunDir(tmp_path_factory.mktemp("whole") / "run")
    pipeline.audit(load_config(None, TINY), run)
    return run


@pytest.mark.parametrize(
    "inside", ["models/0002/weights.safetensors", "scores/lira-online.npy", "metrics.json"]
)
def test_audit_killed_inside_an_atomic_write_resumes_to_the_same_results(
    tmp_path, uninterrupted, inside
):
    out = tmp_path / "run"
    settings = [a for s in TINY for a in ("--set", s)]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    killed = subprocess.run(
        [sys.executable, "-c", KILL, inside, "audit", "--out", str(out), *settings],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == 9, killed.stderr
    assert not (out / inside).exists()
    assert list(out.rglob(f".{Path(inside).name}.*.tmp"))  # the write it was killed in
    run = RunDir(out)
    metrics = pipeline.audit(load_config(None, TINY), run)
    whole = json.loads(uninterrupted.metrics_json.read_text())["attacks"]
    assert metrics == whole
    for name in ("loss", "lira-online"):
        np.testing.assert_array_equal(
            np.load(run.scores(name)), np.load(uninterrupted.scores(name))
        )
    assert pipeline.status(run)["done"] == [0, 1, 2, 3]
    shutil.rmtree(out)


@pytest.mark.slow
def test_two_audits_of_one_run_at_once_end_with_the_same_complete_run(tmp_path, uninterrupted):
    out = tmp_path / "run"
    settings = [a for s in TINY for a in ("--set", s)]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    command = [sys.executable, "-m", "miakit", "audit", "--out", str(out), *settings]
    both = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    for process in both:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    run = RunDir(out)
    assert pipeline.status(run)["done"] == [0, 1, 2, 3]
    whole = json.loads(uninterrupted.metrics_json.read_text())["attacks"]
    assert json.loads(run.metrics_json.read_text())["attacks"] == whole
