"""Model locks name their holder beyond the pid (boot id, process start time): a lock left by a
dead process, or whose pid now belongs to another process, is taken over; a live holder is
named by status, train and query, and waited for by audit."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from miakit import pipeline
from miakit.cli import app
from miakit.config import load_config
from miakit.store import RunDir, boot_id, lock_holder, lock_owner, process_start

TINY = ["split.num_models=4", "model.hidden=[8]", "train.epochs=1", "attacks=[loss]"]


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def hold(run: RunDir, m: int, **owner) -> None:
    run.model_dir(m).mkdir(parents=True, exist_ok=True)
    run.lock(m).write_text(json.dumps(lock_owner() | owner))


def test_holders_are_told_apart(tmp_path, sleeper):
    run = RunDir(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    cases = {
        0: ({"pid": sleeper.pid, "start": process_start(sleeper.pid)}, "live"),
        1: ({"pid": int(dead.stdout)}, "dead"),
        2: ({"pid": sleeper.pid, "start": process_start(sleeper.pid) + 1}, "dead"),  # pid reused
        3: ({"boot_id": "another-boot"}, "dead"),
        4: ({"host": "elsewhere"}, "foreign"),
        5: ({"host": "elsewhere", "since": time.time() - 3 * 24 * 3600}, "dead"),
    }
    assert boot_id() and process_start(os.getpid())
    for m, (owner, state) in cases.items():
        hold(run, m, **owner)
        assert lock_holder(run.lock(m))["state"] == state, m
    run.lock(6).parent.mkdir(parents=True)
    run.lock(6).write_text('{"host": ')  # half-written by a process killed while taking it
    assert lock_holder(run.lock(6))["state"] == "dead"


def test_status_train_query_and_audit_with_held_models(tmp_path, sleeper):
    config = load_config(None, TINY)
    run = RunDir(tmp_path / "run")
    planned = pipeline.plan(config, run)
    hold(run, 1, pid=sleeper.pid, start=process_start(sleeper.pid))
    hold(run, 2, pid=sleeper.pid, start=process_start(sleeper.pid) - 1)  # a reused pid
    hold(run, 3, host="elsewhere")
    states = pipeline.status(run)
    assert states["running"] == [1] and states["dead lock"] == [2]
    assert states["running elsewhere"] == [3] and states["missing"] == [0]

    result = CliRunner().invoke(app, ["train", str(run.root)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0 and "trained 2 models" in output  # 0 and 2 (taken over)
    assert (
        f"2 models (e.g. model 1) are being trained by another process (pid {sleeper.pid}" in output
    )
    result = CliRunner().invoke(app, ["query", str(run.root)])
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "being trained by another process" in output
    assert "model 1 is not trained" not in output

    run.lock(3).unlink()
    said = []
    threading.Timer(1.0, sleeper.kill).start()  # the other process dies: its lock is dead
    pipeline.audit(planned.config, run, log=said.append)
    assert any("waiting for it" in line for line in said)
    assert pipeline.status(run)["done"] == [0, 1, 2, 3]
    assert not run.lock(1).exists()


def test_taking_a_model_lock_removes_what_a_killed_writer_left(tmp_path):
    run = RunDir(tmp_path / "run")
    planned = pipeline.plan(load_config(None, TINY), run)
    left = run.model_dir(1) / ".weights.safetensors.k1lled.tmp"  # as atomic_path names them
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_bytes(b"half a file")
    kept = run.model_dir(1) / "notes.tmp"  # not one of ours: no leading dot
    kept.write_text("the user's")
    pipeline.train(planned, run)
    assert not left.exists() and kept.exists()
    assert not list(run.root.rglob(".*.tmp"))
