"""ROC figures against examples worked out by hand."""

import numpy as np
import pytest

from miakit.errors import MiakitError
from miakit.evaluate.metrics import summarize
from miakit.evaluate.roc import roc_curve


def test_roc_points_with_ties_by_hand():
    # scores: members 0.9, 0.8, 0.5 ; non-members 0.8, 0.3, 0.1 (one tie at 0.8 across classes)
    scores = np.array([0.9, 0.8, 0.5, 0.8, 0.3, 0.1])
    members = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    roc = roc_curve(scores, members)
    # thresholds: inf, 0.9, 0.8 (one TP and one FP flip together), 0.5, 0.3, 0.1
    np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(roc.false_positives, [0, 0, 1, 1, 2, 3])
    # segments (fpr0→fpr1, tpr0, tpr1): (0→0,...)=0; (0→1/3, 1/3, 2/3)=1/6; (1/3→1/3)=0;
    # (1/3→2/3, 1, 1)=1/3; (2/3→1, 1, 1)=1/3
    assert roc.auc() == pytest.approx(1 / 6 + 1 / 3 + 1 / 3)
    assert roc.tpr_at_fpr(0.0) == pytest.approx(1 / 3)
    assert roc.tpr_at_fpr(0.34) == pytest.approx(1.0)
    # best threshold 0.5: TPR 1, FPR 1/3 → 1 − (1/3 + 0)/2
    assert roc.balanced_accuracy() == pytest.approx(1 - (1 / 3) / 2)


def test_all_tied_scores_give_chance():
    roc = roc_curve(np.ones(10), np.arange(10) % 2 == 0)
    np.testing.assert_allclose(roc.fpr, [0, 1])
    np.testing.assert_allclose(roc.tpr, [0, 1])
    assert roc.auc() == pytest.approx(0.5)
    assert roc.tpr_at_fpr(0.5) == 0.0  # no threshold reaches FPR ≤ 0.5 with TPR > 0
    assert roc.balanced_accuracy() == pytest.approx(0.5)


def test_auc_equals_pairwise_probability():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 20, 300).astype(float)  # many ties
    members = rng.random(300) < 0.4
    pos, neg = scores[members], scores[~members]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0) + 0.5 * (diff == 0)).mean()  # Mann–Whitney with ties counted half
    assert roc_curve(scores, members).auc() == pytest.approx(expected)


def test_tpr_at_low_fpr_is_largest_tpr_not_interpolated():
    scores = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=float)
    members = np.array([1, 1, 0, 1, 1, 0, 0, 1, 0, 0], dtype=bool)
    roc = roc_curve(scores, members)
    assert roc.tpr_at_fpr(0.19) == pytest.approx(2 / 5)  # the FPR-0.2 point is beyond 0.19
    assert roc.tpr_at_fpr(0.2) == pytest.approx(4 / 5)


def test_summarize_mean_and_std_over_targets():
    keep = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=bool)
    scores = np.array([[2.0, 1.0, 0.0, -1.0], [0.0, 1.0, 2.0, -1.0]])  # AUC 1 and 0.5
    summary = summarize(scores, keep, [0, 1], [0.01])
    assert summary["auc"]["per_target"] == pytest.approx([1.0, 0.5])
    assert summary["auc"]["mean"] == pytest.approx(0.75)
    assert summary["auc"]["std"] == pytest.approx(0.25)
    assert summary["auc"]["n_targets"] == 2


def test_roc_rejects_one_class_and_nan():
    with pytest.raises(MiakitError, match="members and non-members"):
        roc_curve(np.ones(3), np.ones(3, dtype=bool))
    with pytest.raises(MiakitError, match="NaN"):
        roc_curve(np.array([np.nan, 1.0]), np.array([True, False]))
