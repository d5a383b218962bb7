"""The content-hash chain: scores, metrics and report are redone exactly when what they were
computed from changed, a finished audit reruns without writing anything, and a stage run on its
own refuses stale inputs with the command that makes them current."""

import json
import shutil

import numpy as np
import pytest
from scipy.special import log_softmax
from typer.testing import CliRunner

from miakit import model_jobs, pipeline
from miakit.cli import app
from miakit.errors import MiakitError
from miakit.store import RunDir

from .synthetic import balanced_keep_matrix


class CountingTrainer:
    def __init__(self):
        self.calls = 0
        self.real = model_jobs.train_model

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


def snapshot(root):
    """Every file under root: its bytes and modification time."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny audit (8 MLPs on digits, loss and LiRA); tests work on copies."""
    from miakit.config import load_config

    config = load_config(
        None,
        [
            "split.num_models=8",
            "model.hidden=[32]",
            "train.epochs=4",
            "train.lr=0.01",
            "attacks=[loss, lira-online, lira-offline]",
        ],
    )
    root = tmp_path_factory.mktemp("finished") / "run"
    pipeline.audit(config, RunDir(root))
    return config, root


class Invoked:
    """A CLI run: exit code, and its output with rich's line wrapping undone."""

    def __init__(self, *args):
        result = CliRunner().invoke(app, [str(a) for a in args])
        self.exit_code = result.exit_code
        self.output = " ".join(result.output.split())


invoke = Invoked


def test_a_rerun_of_a_finished_audit_writes_nothing(run_copy, monkeypatch):
    config, run = run_copy
    before = snapshot(run.root)
    counter = CountingTrainer()
    monkeypatch.setattr(model_jobs, "train_model", counter)
    pipeline.audit(config, run)  # the copy: every file has new times, so each is hashed again
    pipeline.audit(config, run)
    assert counter.calls == 0
    assert snapshot(run.root) == before
    result = invoke("report", run.root)
    assert result.exit_code == 0, result.output
    assert snapshot(run.root) == before


def test_changed_attack_options_redo_that_attack_only(run_copy):
    config, run = run_copy
    before = snapshot(run.root)
    changed = config.model_copy(update={"attack_options": {"lira-online": {"center": "mean"}}})
    pipeline.audit(changed, run)
    after = snapshot(run.root)
    assert after["scores/loss.npy"] == before["scores/loss.npy"]
    assert after["scores/lira-offline.npy"] == before["scores/lira-offline.npy"]
    assert after["scores/lira-online.npy"] != before["scores/lira-online.npy"]
    assert after["metrics.json"] != before["metrics.json"]
    assert after["models/0003/logits.npy"] == before["models/0003/logits.npy"]


def test_replanned_run_is_refused_by_evaluate_and_report(run_copy):
    """Issue 18 (b): a run re-planned with another seed (or epochs) and stopped there."""
    config, run = run_copy
    for change in [{"seed": 1}, {"train": config.train.model_copy(update={"epochs": 6})}]:
        pipeline.plan(config.model_copy(update=change), run)
        for stage in ("evaluate", "report"):
            result = invoke(stage, run.root)
            assert result.exit_code == 2, result.output
            assert "stale logits" in result.output and "miakit audit" in result.output
        with pytest.raises(MiakitError, match="stale logits"):
            pipeline.attack(run, config)


def write_byo_run(root, rng):
    keep = balanced_keep_matrix(16, 60)
    labels = rng.integers(0, 3, 60)
    run = RunDir(root)
    root.mkdir()
    np.save(run.keep, keep)
    np.save(run.labels, labels)
    for m in range(16):
        run.model_dir(m).mkdir(parents=True)
        logits = rng.normal(size=(60, 1, 3)).astype(np.float32)
        logits[keep[m], 0, labels[keep[m]]] += 3.0
        np.save(run.logits(m), logits)
    return run, keep, labels


def test_replaced_logits_make_scores_stale_and_attack_redoes_them(tmp_path):
    """Issue 18 (a): brought-in run, model 0's logits replaced by noise after `attack`."""
    rng = np.random.default_rng(0)
    run, _, labels = write_byo_run(tmp_path / "byo", rng)
    assert invoke("attack", run.root, "--attacks", "loss").exit_code == 0
    assert invoke("evaluate", run.root, "--attacks", "loss").exit_code == 0
    noise = rng.normal(size=(60, 1, 3)).astype(np.float32)
    np.save(run.logits(0), noise)

    result = invoke("evaluate", run.root, "--attacks", "loss")
    assert result.exit_code == 2
    assert "models/0000/logits.npy changed" in result.output
    assert "miakit attack" in result.output and "--attacks loss" in result.output
    assert invoke("report", run.root).exit_code == 2

    result = invoke("attack", run.root, "--attacks", "loss")
    assert result.exit_code == 0 and "scores written for: loss" in result.output
    expected = log_softmax(noise[:, 0].astype(np.float64), axis=1)[np.arange(60), labels]
    np.testing.assert_allclose(np.load(run.scores("loss"))[0], expected, rtol=1e-10)
    assert invoke("evaluate", run.root, "--attacks", "loss").exit_code == 0
    assert invoke("report", run.root).exit_code == 0


def test_edited_labels_are_noticed(tmp_path, run_copy):
    rng = np.random.default_rng(1)
    run, _, labels = write_byo_run(tmp_path / "byo", rng)
    assert invoke("attack", run.root, "--attacks", "loss").exit_code == 0
    edited = labels.copy()
    edited[:50] = (edited[:50] + 1) % 3
    np.save(run.labels, edited)
    result = invoke("evaluate", run.root, "--attacks", "loss")
    assert result.exit_code == 2 and "labels.npy changed" in result.output
    assert invoke("attack", run.root, "--attacks", "loss").exit_code == 0
    assert invoke("evaluate", run.root, "--attacks", "loss").exit_code == 0

    # a planned run: its labels are the data set's; an edit is refused, and audit restores them
    config, planned = run_copy
    original = np.load(planned.labels)
    np.save(planned.labels, np.where(np.arange(len(original)) < 50, 0, original))
    for stage in ("attack", "evaluate", "report"):
        result = invoke(stage, planned.root)
        assert result.exit_code == 2 and "labels.npy" in result.output, result.output
    pipeline.audit(config, planned)
    np.testing.assert_array_equal(np.load(planned.labels), original)


def test_stale_metrics_are_refused_by_report(run_copy):
    config, run = run_copy
    before = json.loads(run.metrics_json.read_text())
    assert before["inputs"]["attacks"] == config.attacks
    np.save(run.scores("loss"), np.load(run.scores("loss")) + 1.0)  # scores edited by hand
    result = invoke("report", run.root)
    assert result.exit_code == 2 and "scores file was changed" in result.output
    assert invoke("attack", run.root).exit_code == 0  # recomputes loss only
    result = invoke("report", run.root)
    assert result.exit_code == 0, result.output


def test_paths_in_stage_output_are_printed_literally(finished, tmp_path):
    _, root = finished
    odd = tmp_path / "r[bold]x:x:"
    shutil.copytree(root, odd)
    result = invoke("report", odd)
    unwrapped = result.output.replace(" ", "")  # rich may wrap a long path anywhere
    assert result.exit_code == 0 and f"report:{odd / 'report.html'}" in unwrapped
