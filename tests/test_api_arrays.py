"""The public API on arrays (`miakit.score`, `miakit.evaluate`, `miakit.attacks`) against
computations written here: cross-entropy with scipy, online LiRA in loops (test_lira's
`expected_scores`), AUC with scikit-learn, TPR at FPR by brute force over thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_softmax, logsumexp
from sklearn.metrics import roc_auc_score

import miakit
from miakit import pipeline
from miakit.store import RunDir, save_npy

from .synthetic import balanced_keep_matrix
from .test_lira import expected_scores


def logits_and_keep(models=8, records=120, augmentations=2, classes=4, seed=0):
    """Random logits [M, N, A, C] whose members' true-class logit is 1.5 higher."""
    rng = np.random.default_rng(seed)
    keep = balanced_keep_matrix(models, records, seed)
    labels = rng.integers(0, classes, records)
    logits = rng.normal(0, 1, (models, records, augmentations, classes))
    for n in range(records):
        logits[:, n, :, labels[n]] += np.where(keep[:, n], 1.5, 0.0)[:, None]
    return logits, labels, keep


def test_loss_is_minus_the_cross_entropy_averaged_over_augmentations():
    logits, labels, keep = logits_and_keep()
    got = miakit.score("loss", logits, labels, keep)
    ce = -np.take_along_axis(log_softmax(logits, axis=-1), labels[None, :, None, None], -1)[..., 0]
    assert got.shape == (8, 120)
    np.testing.assert_allclose(got, -ce.mean(axis=-1), rtol=1e-12)


def test_online_lira_matches_the_formulas_in_loops():
    logits, labels, keep = logits_and_keep()
    z_true = np.take_along_axis(logits, labels[None, :, None, None], -1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, labels[None, :, None, None], -np.inf, axis=-1)
    phi = z_true - logsumexp(others, axis=-1)  # log p_y − log(1 − p_y), [M, N, A]
    got = miakit.score("lira-online", logits, labels, keep, targets=[2, 5])
    for row, target in enumerate([2, 5]):
        want = expected_scores("lira-online", phi, keep, target)
        np.testing.assert_allclose(got[row], want, rtol=1e-9)


def test_options_and_references_reach_the_attack():
    logits, labels, keep = logits_and_keep()
    z_true = np.take_along_axis(logits, labels[None, :, None, None], -1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, labels[None, :, None, None], -np.inf, axis=-1)
    phi = z_true - logsumexp(others, axis=-1)
    got = miakit.score("lira-offline", logits, labels, keep, [0], offline_tail="two-sided")
    # leave-one-out: the equal counts are taken over all models, the target among them
    want = expected_scores("lira-offline", phi, keep, 0, tail="two-sided", design=range(len(keep)))
    np.testing.assert_allclose(got[0], want, rtol=1e-9)
    # the references given, not leave-one-out: the same formulas on the target and them alone
    logits, labels, keep = logits_and_keep(models=16)
    phi = np.take_along_axis(logits, labels[None, :, None, None], -1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, labels[None, :, None, None], -np.inf, axis=-1)
    phi = phi - logsumexp(others, axis=-1)
    subset = list(range(12))
    assert (~keep[1:12]).sum(axis=0).min() >= 2  # every record has an OUT spread of its own
    picked = miakit.score("lira-offline", logits, labels, keep, [0], references=subset[1:])
    want = expected_scores("lira-offline", phi[subset], keep[subset], 0)
    np.testing.assert_allclose(picked[0], want, rtol=1e-9)


def test_a_list_of_memory_maps_scores_as_the_array(tmp_path):
    logits, labels, keep = logits_and_keep()
    paths = []
    for m, model in enumerate(logits.astype(np.float32)):
        paths.append(tmp_path / f"{m}.npy")
        np.save(paths[-1], model)
    maps = [np.load(p, mmap_mode="r") for p in paths]
    as_list = miakit.score("rmia", maps, labels, keep)
    as_array = miakit.score("rmia", logits.astype(np.float32), labels, keep)
    np.testing.assert_array_equal(as_list, as_array)


def test_score_is_what_the_attack_stage_writes(tmp_path):
    """A run of brought-in models scored by `pipeline.attack` (what `miakit attack` runs) and the
    same arrays through `miakit.score` give identical scores."""
    logits, labels, keep = logits_and_keep()
    run = RunDir(tmp_path)
    save_npy(run.keep, keep)
    save_npy(run.labels, labels)
    for m, model in enumerate(logits.astype(np.float32)):
        save_npy(run.logits(m), model)
    pipeline.attack(run, pipeline.run_config(run), ["lira-online", "attack-r"])
    for name in ("lira-online", "attack-r"):
        stored = np.load(run.scores(name))
        np.testing.assert_array_equal(
            miakit.score(name, logits.astype(np.float32), labels, keep), stored
        )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: miakit.score("lira", *a), "unknown attack 'lira'; known attacks: "),
        (
            lambda a: miakit.score("lira-online", *a, centre="mean"),
            "invalid attack options: attack_options.lira-online.centre: unknown key",
        ),
        (lambda a: miakit.score("loss", a[0][:, :, 0], *a[1:]), "logits must be an array"),
        (lambda a: miakit.score("loss", a[0], a[1][:-1], a[2]), "labels must be integers"),
        (lambda a: miakit.score("loss", a[0], a[1], a[2].astype(int)), "keep must be a bool"),
        (lambda a: miakit.score("loss", *a, targets=[8]), "targets must be model indices"),
        (lambda a: miakit.score("lt-iqr", *a), "needs loss traces"),
    ],
)
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(miakit.MiakitError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call(logits_and_keep())


def test_an_attack_that_cannot_run_on_the_output_says_why():
    logits, labels, keep = logits_and_keep()
    with pytest.raises(miakit.AttackUnavailable, match="needs the target's per-class scores"):
        miakit.score("lira-online", logits, labels, keep, output="label")
    gap = miakit.score("gap", logits, labels, keep, output="label")
    correct = logits[:, :, 0].argmax(axis=-1) == labels
    np.testing.assert_array_equal(gap, correct.astype(float))


def brute_force_tpr_at_fpr(scores, members, x):
    """The largest TPR over thresholds (each distinct score) whose FPR ≤ x."""
    best = 0.0
    for tau in np.unique(scores):
        called = scores >= tau
        if called[~members].mean() <= x:
            best = max(best, called[members].mean())
    return best


def test_evaluate_matches_sklearn_auc_and_brute_force_tpr():
    rng = np.random.default_rng(1)
    keep = balanced_keep_matrix(6, 400, 1)
    scores = rng.normal(0, 1, (3, 400)) + 0.8 * keep[[1, 3, 4]]
    table = miakit.evaluate(scores, keep, targets=[1, 3, 4], fprs=[0.01, 0.001]).set_index("metric")
    aucs = [roc_auc_score(keep[t], s) for s, t in zip(scores, [1, 3, 4], strict=True)]
    assert table.loc["auc", "mean"] == pytest.approx(np.mean(aucs), rel=1e-12)
    assert table.loc["auc", "std"] == pytest.approx(np.std(aucs), rel=1e-9)
    assert table.loc["auc", "n_targets"] == 3
    assert table.loc["auc", "ci_low"] < table.loc["auc", "mean"] < table.loc["auc", "ci_high"]
    tprs = [
        brute_force_tpr_at_fpr(s, keep[t], 0.01) for s, t in zip(scores, [1, 3, 4], strict=True)
    ]
    assert table.loc["tpr@fpr=0.01", "mean"] == pytest.approx(np.mean(tprs), rel=1e-12)
    assert pd.isna(table.loc["tpr@fpr=0.01", "not_measurable"])
    # 200 non-members per target cannot resolve FPR 0.1% (it needs 1,000)
    assert (
        "needs at least 1000 non-members per target" in table.loc["tpr@fpr=0.001", "not_measurable"]
    )
    assert np.isnan(table.loc["tpr@fpr=0.001", "mean"])
    assert {"shadow_tpr@fpr=0.01", "ppv@fpr=0.01,prior=0.1"} <= set(table.index)


def test_evaluate_of_several_attacks_has_an_attack_column():
    rng = np.random.default_rng(2)
    keep = balanced_keep_matrix(4, 200, 2)
    table = miakit.evaluate(
        {"a": rng.normal(size=(4, 200)), "b": rng.normal(size=(4, 200))}, keep, fprs=[0.05]
    )
    assert list(table.columns[:2]) == ["attack", "metric"]
    assert set(table["attack"]) == {"a", "b"}


@pytest.mark.parametrize(
    ("scores", "keep", "message"),
    [
        (np.zeros((2, 5)), np.ones((2, 4), dtype=bool), "must have shape"),
        (np.zeros((2, 4)), np.ones((2, 4), dtype=int), "keep must be a bool matrix"),
        (np.full((1, 4), np.nan), np.array([[1, 0, 1, 0]], dtype=bool), "NaN or infinity"),
        (np.zeros((1, 4)), np.ones((1, 4), dtype=bool), "target 0 has no non-members"),
    ],
)
def test_evaluate_bad_input_is_one_clear_error(scores, keep, message):
    with pytest.raises(miakit.MiakitError, match=message):
        miakit.evaluate(scores, keep)


def test_attacks_lists_the_registry_with_options_as_the_configs_define_them():
    infos = {info.name: info for info in miakit.attacks()}
    assert {"loss", "lira-online", "rmia", "attack-r", "lt-iqr"} <= set(infos)
    assert "Carlini" in infos["lira-online"].what and "Zarifzadeh" in infos["rmia"].what
    for name, info in infos.items():
        # the defaults are what an attack built without options uses
        defaults = pipeline.make_attack(name).config.model_dump()
        assert {o.name: o.default for o in info.options} == defaults
    rmia = {o.name: o for o in infos["rmia"].options}
    assert rmia["gamma"].description
