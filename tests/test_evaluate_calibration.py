"""ECE, overconfidence, accuracy and false positives on out-of-distribution records."""

import numpy as np
import pytest

from miakit.evaluate.calibration import ood_false_positive_rates, reliability
from miakit.evaluate.tables import calibration_table


def test_ece_and_overconfidence_on_a_constructed_case():
    probs = np.array([[0.05, 0.95], [0.95, 0.05], [0.38, 0.62], [0.55, 0.45]])
    labels = np.array([1, 1, 1, 0])
    d = reliability(probs, labels)
    # bins of width 1/15: 0.95 → bin 14 (twice, one right), 0.62 → bin 9, 0.55 → bin 8
    assert d.counts[[8, 9, 14]].tolist() == [1, 1, 2] and d.counts.sum() == 4
    assert d.accuracy[14] == 0.5 and d.confidence[14] == pytest.approx(0.95)
    # ECE = ½·|0.5 − 0.95| + ¼·|1 − 0.62| + ¼·|1 − 0.55|
    assert d.ece() == pytest.approx(0.5 * 0.45 + 0.25 * 0.38 + 0.25 * 0.45)
    # OE: only bin 14 is overconfident: ½ · 0.95 · 0.45
    assert d.overconfidence() == pytest.approx(0.5 * 0.95 * 0.45)


def test_perfect_calibration_has_zero_ece():
    # confidence 0.6 (bin 8), right in three records of five
    probs = np.tile([0.6, 0.4], (5, 1))
    d = reliability(probs, np.array([0, 0, 0, 1, 1]))
    assert d.ece() == pytest.approx(0) and d.overconfidence() == pytest.approx(0)


def test_calibration_table_splits_members_and_non_members():
    labels = np.array([0, 1, 0, 1])
    keep = np.array([[True, True, False, False]])
    logits = np.zeros((4, 1, 2))
    logits[[0, 1, 2, 3], 0, [0, 1, 1, 1]] = 5.0  # members right; non-members: one right of two
    table = calibration_table([logits], labels, keep, [0])
    assert table.loc[0, "train_accuracy"] == 1.0 and table.loc[0, "test_accuracy"] == 0.5


def test_ood_false_positive_rate_uses_in_distribution_threshold():
    scores = np.array([[0.9, 0.8, 0.5, 0.8, 0.3, 0.1]])  # τ at FPR 0 is 0.9
    keep = np.array([[1, 1, 1, 0, 0, 0]], dtype=bool)
    ood = np.array([[1.0, 0.9, 0.1, 0.5]])
    rates = ood_false_positive_rates(ood, scores, keep, [0], [0.01, 0.5])
    assert rates["ood_fpr@fpr=0.01"] == [0.5]
    assert rates["ood_fpr@fpr=0.5"] == [0.75]  # τ 0.5 once a third of non-members may pass
