"""Executors, shards, locks and worker crashes: nothing lost, nothing trained twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from miakit import pipeline
from miakit.config import load_config
from miakit.executors import LocalExecutor, ProcessExecutor
from miakit.plan import plan
from miakit.store import RunDir, model_lock


def fail_on_two(task):
    if task == 2:
        raise ValueError("task two is bad")
    return task * 10


def die_on_two(task):
    if task == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return task * 10


@pytest.mark.parametrize("executor", [LocalExecutor(), ProcessExecutor(workers=2)])
def test_one_failed_task_does_not_stop_the_others(executor):
    results, reported = {}, []
    failures = executor.run(
        fail_on_two, [0, 1, 2, 3], lambda t, r: results.update({t: r}), reported.append
    )
    assert results == {0: 0, 1: 10, 3: 30}
    assert [f.task for f in failures] == [2] and reported == failures
    assert "task two is bad" in failures[0].error


def test_dead_worker_is_retried_then_reported():
    results = {}
    failures = ProcessExecutor(workers=2, retries=1).run(
        die_on_two, [0, 1, 2, 3], lambda t, r: results.update({t: r})
    )
    assert results == {0: 0, 1: 10, 3: 30}
    assert [f.task for f in failures] == [2]
    assert "died" in failures[0].error


def test_lock_is_exclusive_and_abandoned_locks_are_taken_over(tmp_path):
    run = RunDir(tmp_path)
    with model_lock(run, 0) as first, model_lock(run, 0) as second:
        assert first and not second
    assert not run.lock(0).exists()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    run.lock(0).write_text(
        json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "since": time.time()})
    )
    with model_lock(run, 0) as taken:
        assert taken


def test_shards_are_disjoint_and_cover_every_model():
    shards = [pipeline.shard_models(10, (i, 3)) for i in range(3)]
    assert sorted(m for shard in shards for m in shard) == list(range(10))
    assert all(set(a).isdisjoint(b) for a in shards for b in shards if a is not b)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "miakit", *args]


def _metas(run: RunDir, count: int) -> dict[int, dict]:
    return {m: run.read_meta(m) for m in range(count) if run.read_meta(m)}


def test_two_shard_processes_fill_the_run_exactly(tmp_path, tiny_config):
    run = RunDir(tmp_path / "run")
    plan(tiny_config, run)
    procs = [
        subprocess.Popen(
            _cli("train", str(run.root), "--shard", f"{i}/2"), stdout=subprocess.DEVNULL
        )
        for i in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    metas = _metas(run, 8)
    assert sorted(metas) == list(range(8))
    pids = [metas[m]["worker"]["pid"] for m in range(8)]
    assert len(set(pids[:4])) == 1 and len(set(pids[4:])) == 1 and pids[0] != pids[4]
    assert not list(run.root.rglob(".lock"))


@pytest.mark.slow
def test_killed_run_resumes_with_nothing_lost_or_trained_twice(tmp_path):
    run = RunDir(tmp_path / "run")
    args = [
        "--set",
        "split.num_models=16",
        "--set",
        "model.hidden=[64]",
        "--set",
        "train.epochs=30",
    ]
    plan(load_config(None, [a for a in args if a != "--set"]), run)
    proc = subprocess.Popen(
        _cli("train", str(run.root), "--executor", "processes", "--workers", "2"),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while len(_metas(run, 16)) < 3 and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and both workers, mid-run
    proc.wait()
    before = _metas(run, 16)
    assert 3 <= len(before) < 16

    rerun = subprocess.run(_cli("train", str(run.root)), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    after = _metas(run, 16)
    assert sorted(after) == list(range(16))
    for m, meta in before.items():
        assert after[m]["finished_at"] == meta["finished_at"]  # not trained again
    assert not list(run.root.rglob(".lock"))
    assert not list(run.root.rglob("*.tmp"))


@pytest.mark.slow
def test_ray_executor_trains_a_run(tmp_path, tiny_config):
    pytest.importorskip("ray")
    config = tiny_config.model_copy(deep=True)
    config.execution.executor = "ray"
    config.execution.models_per_task = 3
    run = RunDir(tmp_path / "run")
    planned = plan(config, run)
    assert sorted(pipeline.train(planned, run)) == list(range(8))
    assert sorted(pipeline.query(planned, run)) == list(range(8))
    assert np.load(run.logits(7)).shape == (1797, 1, 10)
    assert Path(run.meta(0)).is_file()


def test_a_failed_model_does_not_stop_the_others_and_is_redone(tmp_path, tiny_config, monkeypatch):
    from miakit import model_jobs
    from miakit.errors import MiakitError

    real, calls = model_jobs.train_model, []

    def third_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("out of memory, say")
        return real(*args, **kwargs)

    monkeypatch.setattr(model_jobs, "train_model", third_fails)
    run = RunDir(tmp_path / "run")
    planned = plan(tiny_config, run)
    with pytest.raises(MiakitError, match=r"1 models failed \(models \[2\]\).*out of memory"):
        pipeline.train(planned, run)
    assert sorted(_metas(run, 8)) == [0, 1, 3, 4, 5, 6, 7]
    assert pipeline.train(planned, run) == [2]
