"""The audit pipeline end to end on digits: run directory, resume, staleness, brought-in models."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from miakit import model_jobs, pipeline
from miakit.cli import app
from miakit.config import load_config
from miakit.errors import MiakitError
from miakit.models import REVISIONS
from miakit.store import RunDir

from .synthetic import balanced_keep_matrix


class CountingTrainer:
    """Wraps the real trainer, counting calls; optionally interrupts after the n-th model trains."""

    def __init__(self, interrupt_after: int | None = None):
        self.calls = 0
        self.interrupt_after = interrupt_after
        self.real = model_jobs.train_model

    def __call__(self, *args, **kwargs):
        report = self.real(*args, **kwargs)
        self.calls += 1
        if self.calls == self.interrupt_after:
            raise KeyboardInterrupt  # as a user's Ctrl-C after training, before weights are saved
        return report


def test_plan_draws_a_balanced_reproducible_keep_matrix(tmp_path, tiny_config):
    first = pipeline.plan(tiny_config, RunDir(tmp_path / "a")).keep
    again = pipeline.plan(tiny_config, RunDir(tmp_path / "b")).keep
    other = pipeline.plan(tiny_config.model_copy(update={"seed": 1}), RunDir(tmp_path / "c")).keep
    assert first.shape == (8, 1797) and first.dtype == bool
    assert (first.sum(axis=0) == 4).all()
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    assert np.load(tmp_path / "a" / "keep.npy").tolist() == first.tolist()


def test_odd_number_of_models_is_rejected(tmp_path):
    with pytest.raises(MiakitError, match="even number of models"):
        pipeline.plan(load_config(None, ["split.num_models=7"]), RunDir(tmp_path))


def test_audit_writes_the_documented_run_directory(tmp_path, tiny_config):
    run = RunDir(tmp_path / "run")
    metrics = pipeline.audit(tiny_config, run)
    for name in ["run.yaml", "keep.npy", "labels.npy", "pool.json", "metrics.json", "metrics.csv"]:
        assert (run.root / name).is_file(), name
    for m in range(8):
        assert run.weights(m).is_file()
        assert np.load(run.logits(m)).shape == (1797, 1, 10)
        meta = run.read_meta(m)
        assert meta["train_hash"] and meta["query_hash"] and meta["accuracy_in"] > 0.5
    for attack in tiny_config.attacks:
        scores = np.load(run.scores(attack))
        assert scores.shape == (8, 1797)
        assert (run.plots / f"roc_{attack}.png").stat().st_size > 1000
    table = pd.read_csv(run.metrics_csv)
    assert list(table.columns[:5]) == ["attack", "metric", "mean", "std", "n_targets"]
    assert {"auc", "balanced_accuracy", "tpr@fpr=0.01", "tpr@fpr=0.001", "tpr@fpr=0.0001"} <= set(
        table.metric
    )
    assert (table.loc[table.metric == "auc", "n_targets"] == 8).all()
    assert (
        json.loads(run.metrics_json.read_text())["attacks"]["loss"]["auc"]["mean"]
        == (metrics["loss"]["auc"]["mean"])
    )
    assert not list(run.root.rglob("*.tmp"))


def test_resume_after_interrupt_trains_each_model_once(tmp_path, tiny_config, monkeypatch):
    run = RunDir(tmp_path / "run")
    interrupted = CountingTrainer(interrupt_after=4)
    monkeypatch.setattr(model_jobs, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.audit(tiny_config, run)
    done = {m: run.read_meta(m) for m in range(3)}
    assert all(done.values()) and run.read_meta(3) is None

    resumed = CountingTrainer()
    monkeypatch.setattr(model_jobs, "train_model", resumed)
    metrics = pipeline.audit(tiny_config, run)
    assert resumed.calls == 5  # models 3..7 only
    for m, meta in done.items():
        assert run.read_meta(m)["finished_at"] == meta["finished_at"]

    monkeypatch.setattr(model_jobs, "train_model", interrupted.real)
    fresh = pipeline.audit(tiny_config, RunDir(tmp_path / "fresh"))
    assert metrics == fresh


def test_changed_training_setting_retrains_and_other_changes_do_not(
    tmp_path, tiny_config, monkeypatch
):
    run = RunDir(tmp_path / "run")
    pipeline.audit(tiny_config, run)
    counter = CountingTrainer()
    monkeypatch.setattr(model_jobs, "train_model", counter)

    pipeline.audit(tiny_config.model_copy(update={"attacks": ["loss"]}), run)
    assert counter.calls == 0

    changed = tiny_config.model_copy(deep=True)
    changed.train.lr = 2e-3
    pipeline.audit(changed, run)
    assert counter.calls == 8

    # new code for the architecture (its revision bumped): the stored models are stale
    monkeypatch.setitem(REVISIONS, changed.model.arch, REVISIONS[changed.model.arch] + 1)
    pipeline.audit(changed, run)
    assert counter.calls == 16


def test_brought_in_models_attack_and_evaluate_from_the_cli(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    keep = balanced_keep_matrix(16, 40)
    labels = rng.integers(0, 3, 40)
    run = RunDir(tmp_path / "byo")
    run.root.mkdir()
    np.save(run.keep, keep)
    np.save(run.labels, labels)
    for m in range(16):
        run.model_dir(m).mkdir(parents=True)
        logits = rng.normal(size=(40, 1, 3)).astype(np.float32)
        logits[keep[m], 0, labels[keep[m]]] += 2.0  # members are fitted better
        np.save(run.logits(m), logits)
    # a brought-in run has no run.yaml: the settings are the defaults, here but for one option
    every = {"attack_options": {"lira-online": {"reference_counts": "all"}}}
    config = pipeline.run_config(run).model_copy(update=every)
    monkeypatch.setattr(pipeline, "run_config", lambda _: config)
    runner = CliRunner()
    attacks = "loss,lira-online,lira-offline"
    result = runner.invoke(app, ["attack", str(run.root), "--attacks", attacks])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(run.root), "--attacks", attacks])
    assert result.exit_code == 0, result.output
    assert "lira-online" in result.output
    # 16 models, leave-one-out, online LiRA on every reference: its figure carries the small-M
    # caveat beside it; offline LiRA on equal counts (the default) does not
    lines = result.output.splitlines()
    row = next(line for line in lines if line.lstrip().startswith("lira-online"))
    words = " ".join(result.output.split())  # the console wraps long lines at 80 columns
    assert "⚠" in row and "⚠ lira-online: only 16 models (< 32) and reference_counts: all" in words
    loss_row = next(line for line in lines if line.lstrip().startswith("loss"))
    offline_row = next(line for line in lines if line.lstrip().startswith("lira-offline"))
    assert "⚠" not in loss_row and "⚠" not in offline_row
    # about 20 non-members per target cannot resolve FPR 1% (it needs 100): no number is printed
    assert loss_row.count("n/m") == 4  # every default FPR: 1%, 0.1%, 0.01%, 0.001%
    fewest = min(40 - int(keep[m].sum()) for m in range(16))
    assert f"needs at least 100 non-members per target, the smallest target has {fewest}" in words
    stored = json.loads(run.metrics_json.read_text())
    assert set(stored["warnings"]) == {"lira-online"} and "DeLong" in stored["intervals"]
    assert stored["attacks"]["loss"]["tpr@fpr=0.01"]["mean"] is None
    table = pd.read_csv(run.metrics_csv)
    assert set(table.attack) == {"loss", "lira-online", "lira-offline"}
    assert table.loc[table.metric == "auc", "mean"].min() > 0.7


def test_brought_in_run_with_missing_logits_is_a_clear_error(tmp_path):
    run = RunDir(tmp_path)
    np.save(run.keep, balanced_keep_matrix(4, 10))
    np.save(run.labels, np.zeros(10, dtype=np.int64))
    result = CliRunner().invoke(app, ["attack", str(tmp_path)])
    assert result.exit_code == 2
    assert "have no logits.npy" in result.output


def test_cli_reports_config_errors_without_traceback(tmp_path):
    result = CliRunner().invoke(app, ["audit", "--out", str(tmp_path), "--set", "train.lrr=1"])
    assert result.exit_code == 2
    assert "train.lrr: unknown key" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_default_audit_lira_online_beats_loss(tmp_path):
    """The README's main job: 64 MLPs on digits, leave-one-out over all 64."""
    metrics = pipeline.audit(load_config(), RunDir(tmp_path / "run"))
    assert metrics["lira-online"]["auc"]["n_targets"] == 64
    assert metrics["lira-online"]["auc"]["mean"] > metrics["loss"]["auc"]["mean"] + 0.03


def test_attack_refuses_a_half_retrained_run(tmp_path, tiny_config, monkeypatch):
    run = RunDir(tmp_path / "run")
    pipeline.audit(tiny_config, run)
    changed = tiny_config.model_copy(deep=True)
    changed.train.epochs = 2
    monkeypatch.setattr(model_jobs, "train_model", CountingTrainer(interrupt_after=2))
    with pytest.raises(KeyboardInterrupt):
        pipeline.audit(changed, run)
    with pytest.raises(MiakitError, match="missing or stale logits"):
        pipeline.attack(run, changed)


def test_audit_with_loss_traces_runs_every_registered_attack(tmp_path):
    from miakit.attacks import ATTACKS as REGISTERED

    # the attacks of language models' per-token outputs run on text (tests/test_text.py)
    ATTACKS = [name for name, cls in REGISTERED.items() if not cls.needs_tokens]

    result = CliRunner().invoke(
        app,
        ["audit", "--out", str(tmp_path / "run"), "--set", "split.num_models=8",
         "--set", "model.hidden=[32]", "--set", "train.epochs=8", "--set", "train.lr=0.01",
         "--set", "train.record_trace=true", "--set", f"attacks=[{', '.join(sorted(ATTACKS))}]"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / "run")
    trace = np.load(run.trace(0))
    assert trace.shape == (9, 1797) and trace.dtype == np.float16
    table = pd.read_csv(run.metrics_csv)
    # the augmentation attack needs query views (digits: one), and says so
    assert set(table.attack) == set(ATTACKS) - {"label-augmentation"}
    assert "skipped label-augmentation: " in result.output
    for name in ATTACKS:
        assert name in result.output  # one table with every attack, and the skipped


def test_batched_training_through_the_pipeline(tmp_path, tiny_config):
    config = tiny_config.model_copy(deep=True)
    config.train.batched = True
    config.execution.models_per_task = 4
    config.train.optimizer = "sgd"
    config.train.lr = 0.05
    planned = pipeline.plan(config, RunDir(tmp_path / "batched"))
    assert sorted(pipeline.train(planned, RunDir(tmp_path / "batched"))) == list(range(8))
    alone = config.model_copy(deep=True)
    alone.train.batched = False
    planned_alone = pipeline.plan(alone, RunDir(tmp_path / "alone"))
    pipeline.train(planned_alone, RunDir(tmp_path / "alone"))
    pipeline.query(planned, RunDir(tmp_path / "batched"))
    pipeline.query(planned_alone, RunDir(tmp_path / "alone"))
    np.testing.assert_allclose(
        np.load(RunDir(tmp_path / "batched").logits(5)),
        np.load(RunDir(tmp_path / "alone").logits(5)),
        atol=1e-4,
    )


def test_defences_are_applied_and_recorded(tmp_path, tiny_config):
    from miakit.defences import DefenceConfig, DPConfig, LaplaceConfig

    defences = DefenceConfig(
        dp=DPConfig(enabled=True, noise_multiplier=1.0),
        temperature_scaling=True,
        apply_to="targets",
    )
    dp = tiny_config.model_copy(update={"defences": defences}, deep=True)
    dp.evaluate.targets = 2
    run = RunDir(tmp_path / "dp")
    pipeline.audit(dp, run)
    target, reference = run.read_meta(0), run.read_meta(5)
    assert target["dp"]["epsilon"] > 0 and target["calibration"]["temperature"] > 0
    assert reference["dp"] is None and reference["calibration"] is None
    laplace = tiny_config.model_copy(
        update={"defences": DefenceConfig(laplace=LaplaceConfig(enabled=True))}
    )
    planned = pipeline.plan(laplace, RunDir(tmp_path / "laplace"))
    pipeline.train(planned, RunDir(tmp_path / "laplace"))
    pipeline.query(planned, RunDir(tmp_path / "laplace"))
    meta = RunDir(tmp_path / "laplace").read_meta(3)
    assert meta["calibration"]["laplace_prior_precision"] > 0
