"""Bootstrap intervals: seeded, stratified, and as wide as sampling theory says."""

import numpy as np
import pytest

from miakit.evaluate.bootstrap import bootstrap_mean_intervals, stratified_weights
from miakit.evaluate.metrics import summarize, target_metrics


def test_stratified_weights_keep_class_sizes():
    members = np.arange(50) % 5 == 0
    weights = stratified_weights(members, 7, np.random.default_rng(0))
    assert weights.shape == (7, 50)
    np.testing.assert_array_equal(weights[:, members].sum(axis=1), 10)
    np.testing.assert_array_equal(weights[:, ~members].sum(axis=1), 40)
    assert (weights != 1).any()  # resampled, not the original sample


def test_weighted_roc_equals_roc_of_the_repeated_records():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, 40).astype(float)  # ties
    members = rng.random(40) < 0.5
    weights = stratified_weights(members, 3, rng)
    batch = target_metrics(scores, members, [0.05, 0.2], weights)
    for b in range(3):
        idx = np.repeat(np.arange(40), weights[b].astype(int))
        single = target_metrics(scores[idx], members[idx], [0.05, 0.2])
        for name, value in single.items():
            assert batch[name][b] == pytest.approx(value), name


def test_interval_of_a_mean_matches_its_standard_error():
    # one target, 400 members scoring N(0, 1): the members' mean score has standard error 0.05,
    # so its 95% interval spans about ±1.96 · 0.05 around the sample mean
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(1, 800))
    keep = np.arange(800)[None, :] < 400
    intervals = bootstrap_mean_intervals(
        lambda s, m, w: {"member_mean": w[:, m] @ s[m] / w[:, m].sum(axis=1)},
        scores,
        keep,
        [0],
        resamples=1000,
        seed=0,
    )
    low, high = intervals["member_mean"]
    center, error = scores[0, :400].mean(), scores[0, :400].std() / 20
    assert low == pytest.approx(center - 1.96 * error, abs=0.2 * error)
    assert high == pytest.approx(center + 1.96 * error, abs=0.2 * error)


def test_summarize_intervals_are_seeded_and_bracket_the_mean():
    rng = np.random.default_rng(2)
    keep = rng.random((3, 400)) < 0.5
    scores = rng.normal(size=(3, 400)) + keep
    a = summarize(scores, keep, [0, 1, 2], [0.01], resamples=50, seed=7)
    b = summarize(scores, keep, [0, 1, 2], [0.01], resamples=50, seed=7)
    c = summarize(scores, keep, [0, 1, 2], [0.01], resamples=50, seed=8)
    assert a["auc"]["ci_low"] == b["auc"]["ci_low"] != c["auc"]["ci_low"]
    assert a["auc"]["ci_low"] < a["auc"]["mean"] < a["auc"]["ci_high"]
    assert "ci_low" in a["fp@fpr=0.01"] and "ci_low" not in a["shadow_tpr@fpr=0.01"]


def test_separable_scores_have_a_degenerate_interval():
    keep = np.array([[True] * 5 + [False] * 5])
    scores = np.where(keep, 1.0, 0.0) + np.linspace(0, 0.1, 10)
    summary = summarize(scores, keep, [0], [0.1], resamples=30)
    assert (summary["auc"]["ci_low"], summary["auc"]["ci_high"]) == (1.0, 1.0)
