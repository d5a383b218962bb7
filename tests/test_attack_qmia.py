"""QMIA (Bertran et al., NeurIPS 2023) on cases with a known truth.

Non-members' score given the feature x is N(a·x, σ(x)²), with σ growing in x: the true (1 − α)
quantile is a·x + σ(x)·z_{1−α}. QMIA's regressor should find it, so that "margin > 0" has an FPR
close to α on non-members overall and within easy (small σ) and hard (large σ) records alike,
which one global threshold cannot do.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from miakit.attacks import make_attack
from miakit.errors import MiakitError
from miakit.signals import Signals

from .synthetic import binary_logits_from_log_odds

pytestmark = pytest.mark.attack("qmia")

ALPHA = 0.05


def sigma(x: np.ndarray) -> np.ndarray:
    return 0.2 + 0.6 * (x + 2) / 4  # 0.2 at x = −2, 0.8 at x = 2


def synthetic(records: int = 16000, member_shift: float = 1.0, seed: int = 0):
    """Two models with complementary halves; target 0's score φ is the log-odds of label 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, records)
    keep = np.zeros((2, records), dtype=bool)
    keep[0, rng.permutation(records)[: records // 2]] = True
    keep[1] = ~keep[0]
    phi = 1.5 * x + sigma(x) * rng.standard_normal(records) + member_shift * keep[0]
    other = rng.normal(0, 1, records)
    logits = binary_logits_from_log_odds(np.stack([phi, other]))[:, :, None, :]  # [2, N, 1, 2]
    labels = np.ones(records, dtype=np.int64)
    return Signals.from_arrays(logits, labels, keep, features=x[:, None]), x, phi, keep[0]


def qmia(**options):
    return make_attack("qmia", {"alpha": ALPHA, **options})


@pytest.mark.parametrize("signal", ["hinge", "log_odds"])
def test_fpr_at_the_predicted_quantile_is_close_to_alpha_for_easy_and_hard_records(signal):
    signals, x, phi, members = synthetic()
    margin = qmia(signal=signal).score(signals, 0, [1])
    non = ~members
    # with two classes and label 1 both scores are φ exactly: margin = φ − q̂(x)
    fpr = np.mean(margin[non] > 0)
    assert abs(fpr - ALPHA) < 0.012, fpr
    for part in (x < -1, x > 1):  # small σ, large σ
        assert abs(np.mean(margin[non & part] > 0) - ALPHA) < 0.03
    # the predicted quantile is near the true one: φ − margin = q̂(x)
    true_quantile = 1.5 * x + sigma(x) * norm.ppf(1 - ALPHA)
    assert np.median(np.abs((phi - margin) - true_quantile)) < 0.15
    # one global threshold at FPR α flags hard records far more often than easy ones
    threshold = np.quantile(phi[non] - 1.5 * x[non], 1 - ALPHA)
    flagged = phi - 1.5 * x > threshold
    assert np.mean(flagged[non & (x > 1)]) > 2 * np.mean(flagged[non & (x < -1)])
    # members (shifted by 1) are caught far more often than α
    assert np.mean(margin[members] > 0) > 4 * ALPHA


def test_no_record_is_scored_by_a_regressor_that_saw_it():
    """Raising one non-member's score moves its own margin by exactly that much: its predicted
    quantile does not move, so its regressor was fitted without it."""
    signals, x, _, members = synthetic(records=2000)
    attack = qmia()
    before = attack.score(signals, 0, [1])
    record = int(np.flatnonzero(~members)[0])
    logits = np.stack([np.asarray(m) for m in signals.logits])
    logits[0, record, 0, 1] += 3.0  # φ of label 1 up by 3
    changed = Signals.from_arrays(logits, signals.labels, signals.keep, features=x[:, None])
    after = attack.score(changed, 0, [1])
    assert after[record] == pytest.approx(before[record] + 3.0, abs=1e-9)
    same_fold = attack.fold_of(signals) == attack.fold_of(signals)[record]
    np.testing.assert_array_equal(np.delete(after, record)[np.delete(same_fold, record)],
                                  np.delete(before, record)[np.delete(same_fold, record)])  # fmt: skip


def test_folds_follow_the_features_alone():
    signals, x, *_ = synthetic(records=400)
    features = x[:, None].copy()
    features[1] = features[0]  # a duplicate record
    logits = np.stack([np.asarray(m) for m in signals.logits])
    keep = signals.keep.copy()
    keep[:, [0, 1]] = [[True, False], [False, True]]
    duplicated = Signals.from_arrays(logits, signals.labels, keep, features=features)
    folds = qmia(folds=3).fold_of(duplicated)
    assert folds[0] == folds[1]  # never one in the other's population
    assert set(folds) == {0, 1, 2}
    assert np.all(np.bincount(folds) > 100)
    # membership does not enter: flipping the target's keep row leaves the folds as they were
    flipped = Signals.from_arrays(logits, signals.labels, ~keep, features=features)
    np.testing.assert_array_equal(qmia(folds=3).fold_of(flipped), folds)


def test_scores_are_reproducible_and_the_seed_changes_the_folds():
    signals, *_ = synthetic(records=1000)
    np.testing.assert_array_equal(qmia().score(signals, 0, [1]), qmia().score(signals, 0, [1]))
    assert not np.array_equal(qmia().fold_of(signals), qmia(seed=1).fold_of(signals))


def test_without_features_qmia_says_why():
    signals, *_ = synthetic(records=200)
    bare = Signals.from_arrays(np.stack(signals.logits), signals.labels, signals.keep)
    assert "features" in qmia().unavailable(bare)
    with pytest.raises(MiakitError, match="features"):
        qmia().score(bare, 0, [1])
    queried = signals.with_queries(list(np.zeros((2, 3, 1, 2))), np.ones(3, dtype=np.int64))
    with pytest.raises(MiakitError, match="features"):
        qmia().score(queried, 0, [1])


def test_a_fold_without_population_is_an_error_naming_the_fix():
    signals, *_ = synthetic(records=6)
    with pytest.raises(MiakitError, match="fewer folds or a larger pool"):
        qmia(folds=2).score(signals, 0, [1])


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.2])
def test_alpha_outside_its_range_is_refused(alpha):
    with pytest.raises(MiakitError, match=r"attack_options\.qmia\.alpha"):
        make_attack("qmia", {"alpha": alpha})
