"""The out-of-distribution false-positive study through the pipeline, checked by hand."""

import json

import numpy as np
import pytest

from miakit import model_jobs, pipeline
from miakit.config import load_config
from miakit.signals import cross_entropy
from miakit.store import RunDir

FPRS = [0.05, 0.01]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    config = load_config(
        None,
        [
            "split.num_models=8",
            "model.hidden=[32]",
            "train.epochs=8",
            "train.lr=0.01",
            "attacks=[loss, lira-online, lira-offline, attack-r]",
            f"evaluate.fprs={FPRS}",
            "evaluate.targets=2",
            "evaluate.ood=[{kind: noise, count: 300}, {kind: permuted, count: 300}]",
        ],
    )
    run = RunDir(tmp_path_factory.mktemp("ood") / "run")
    metrics = pipeline.audit(config, run)
    return config, run, metrics


def by_hand_ood_fpr(pool_scores, members, ood_scores, x):
    """The share of OOD scores at or above the lowest threshold whose FPR on the pool is ≤ x."""
    negatives = np.sort(pool_scores[~members])[::-1]
    allowed = int(np.floor(x * len(negatives) + 1e-9))  # false positives the threshold may take
    bar = negatives[allowed]  # the first non-member that must stay below the threshold
    threshold = pool_scores[pool_scores > bar].min()
    return float((ood_scores >= threshold).mean())


def test_loss_attack_ood_fpr_equals_a_hand_computation(study):
    config, run, metrics = study
    keep, labels = np.load(run.keep), np.load(run.labels)
    ood_logits = np.load(run.root / "ood" / "noise" / "logits.npy")
    assert ood_logits.shape == (8, 300, 1, 10)
    # the noise set's labels, drawn as the study draws them
    from miakit.ood_study import make_ood, rng

    plan = pipeline.load_plan(run)
    ood = make_ood("noise", plan.pool, 300, rng(config.seed, "ood-noise"))
    for t in range(2):
        pool_scores = -cross_entropy(np.load(run.logits(t))[:, :1], labels)[:, 0]
        ood_scores = -cross_entropy(ood_logits[t], ood.y)[:, 0]
        for x in FPRS:
            expected = by_hand_ood_fpr(pool_scores, keep[t], ood_scores, x)
            got = metrics["loss"][f"ood_fpr@fpr={x:g},set=noise"]["per_target"][t]
            assert got == pytest.approx(expected)


def test_every_attack_and_set_is_reported(study):
    _, run, metrics = study
    for attack in ("loss", "lira-online", "lira-offline", "attack-r"):
        for ood_set in ("noise", "permuted"):
            for x in FPRS:
                figure = metrics[attack][f"ood_fpr@fpr={x:g},set={ood_set}"]
                assert 0 <= figure["mean"] <= 1 and figure["n_targets"] == 2
    csv = (run.metrics_csv).read_text()
    assert "ood_fpr@fpr=0.01,set=permuted" in csv
    page = (run.root / "report.html").read_text()
    section = page[page.index("Out-of-distribution false positives") :]
    assert "lira-online" in section and "permuted" in section
    assert section.index("OOD FPR at FPR 0.05") < section.index("OOD FPR at FPR 0.01")


def test_models_are_queried_once_and_again_when_retrained(study, monkeypatch):
    config, run, _ = study
    calls = []
    real = model_jobs.query_all
    monkeypatch.setattr(model_jobs, "query_all", lambda *a: calls.append(1) or real(*a))
    pipeline.evaluate(run, config)
    assert calls == []
    meta = run.read_meta(3)
    meta["finished_at"] += 1  # as if model 3 had been retrained (to the same logits)
    run.meta(3).write_text(json.dumps(meta))
    pipeline.evaluate(run, config)
    assert len(calls) == 2  # both sets


def test_query_all_on_pool_records_reproduces_the_stored_logits(study):
    """Other records are queried exactly as the query stage queries the pool."""
    _, run, _ = study
    plan = pipeline.load_plan(run)
    logits = model_jobs.query_all(plan, run, plan.pool.x[:25])
    for m in range(8):
        np.testing.assert_allclose(logits[m], np.load(run.logits(m))[:25], rtol=1e-5, atol=1e-6)


def test_query_all_in_transfer_mode_with_query_views(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    x = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    np.savez(path, x=x, y=np.arange(60) % 3)
    config = load_config(
        None,
        [
            "data.name=user",
            f"data.path={path}",
            "data.subsample=48",
            "split.num_models=4",
            "model.arch=cnn",
            "train.epochs=2",
            "train.batch_size=16",
            "defences.transfer.enabled=true",
            "defences.transfer.pretrain_epochs=1",
            "query.augmentations=2",
        ],
    )
    run = RunDir(tmp_path / "run")
    plan = pipeline.plan(config, run)
    pipeline.train(plan, run)
    pipeline.query(plan, run)
    logits = model_jobs.query_all(plan, run, plan.pool.x[:10])
    assert logits.shape == (4, 10, 2, 3)
    for m in range(4):
        np.testing.assert_allclose(logits[m], np.load(run.logits(m))[:10], rtol=1e-5, atol=1e-6)
