"""Target- and shadow-calibrated thresholds and PPV, against values worked out by hand."""

import json

import numpy as np
import pytest

from miakit.errors import MiakitError
from miakit.evaluate.metrics import long_rows, realistic_figures, summarize
from miakit.evaluate.roc import roc_curve
from miakit.evaluate.thresholds import calibrate, ppv, shadow_thresholds

# three targets over six records; worked out below for FPR 0.1 (no false positive allowed)
KEEP = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0]], dtype=bool)
SCORES = np.array(
    [
        [0.9, 0.8, 0.5, 0.8, 0.3, 0.1],  # a non-member ties a member at 0.8: τ = 0.9
        [0.1, 0.2, 0.7, 0.6, 0.4, 0.3],  # a non-member scores highest: τ = inf
        [0.95, 0.2, 0.85, 0.1, 0.4, 0.3],  # members on top: τ = 0.4
    ]
)


def test_threshold_at_fpr_with_ties_prefers_fewest_false_positives():
    roc = roc_curve(SCORES[0], KEEP[0])
    assert roc.threshold_at_fpr(0.0) == 0.9 and roc.false_positives_at_fpr(0.0) == 0
    # the tie at 0.8 brings one member and one non-member in together: FPR 1/3
    assert roc.threshold_at_fpr(0.4) == 0.5 and roc.false_positives_at_fpr(0.4) == 1
    # TPR 1 is reached at τ 0.5 (1 FP) and again at τ 0.3 (2 FP): the first is reported
    assert roc.tpr_at_fpr(0.7) == 1.0 and roc.threshold_at_fpr(0.7) == 0.5
    assert roc.false_positives_at_fpr(0.7) == 1
    assert roc_curve(SCORES[1], KEEP[1]).threshold_at_fpr(0.1) == np.inf


def test_shadow_threshold_is_median_of_the_others():
    np.testing.assert_array_equal(shadow_thresholds(np.array([1.0, 2, 3, 10])), [3, 3, 2, 2])
    np.testing.assert_array_equal(
        shadow_thresholds(np.array([np.inf, 1, 2])), [1.5, np.inf, np.inf]
    )
    with pytest.raises(MiakitError, match="two targets"):
        shadow_thresholds(np.array([1.0]))


def test_ppv_by_hand():
    assert ppv(0.5, 0.01, 0.01) == pytest.approx(0.005 / (0.005 + 0.0099))
    assert ppv(0.2, 0.001, 0.5) == pytest.approx(0.1 / 0.1005)
    assert ppv(0.3, 0.0, 0.01) == 1.0
    assert np.isnan(ppv(0.0, 0.0, 0.5))


def test_calibrate_target_against_shadow_by_hand():
    table = calibrate(SCORES, KEEP, [0, 1, 2], [0.1], priors=[0.5])
    np.testing.assert_array_equal(table["tau_target"], [0.9, np.inf, 0.4])
    # shadow τ: median(inf, 0.4) = inf; median(0.9, 0.4) = 0.65; median(0.9, inf) = inf
    np.testing.assert_array_equal(table["tau_shadow"], [np.inf, 0.65, np.inf])
    np.testing.assert_allclose(table["tpr_target"], [1 / 3, 0, 1])
    np.testing.assert_allclose(table["fpr_target"], [0, 0, 0])
    # target 1 under τ 0.65: only the non-member at 0.7 is called member
    np.testing.assert_allclose(table["tpr_shadow"], [0, 0, 0])
    np.testing.assert_allclose(table["fpr_shadow"], [0, 1 / 3, 0])
    np.testing.assert_array_equal(table["fp_shadow"], [0, 1, 0])
    np.testing.assert_allclose(table["ppv_target@prior=0.5"], [1, np.nan, 1])
    np.testing.assert_allclose(table["ppv_shadow@prior=0.5"], [np.nan, 0, np.nan])


def test_realistic_figures_by_hand():
    summary = realistic_figures(SCORES, KEEP, [0, 1, 2], [0.1], priors=[0.5])
    assert summary["shadow_fpr@fpr=0.1"]["mean"] == pytest.approx(1 / 9)
    # PPV is undefined where nothing is called member: left out of the mean, stored as None
    assert summary["ppv@fpr=0.1,prior=0.5"]["per_target"] == [1.0, None, 1.0]
    assert summary["ppv@fpr=0.1,prior=0.5"]["n_targets"] == 2
    assert summary["shadow_ppv@fpr=0.1,prior=0.5"]["mean"] == 0.0


def test_summarize_adds_false_positives_realistic_figures_and_standard_json():
    summary = summarize(SCORES, KEEP, [0, 1, 2], [0.1, 0.4], priors=[0.5], intervals=False)
    # at FPR 0.4 target 1 reaches TPR 1 past its top-scoring non-member
    assert summary["fp@fpr=0.4"]["per_target"] == [1, 1, 0]
    assert summary["shadow_fpr@fpr=0.4"]["n_targets"] == 3
    # three non-members per target cannot resolve FPR 0.1 (it needs ten): every figure at it says so
    at_01 = [k for k in summary if "fpr=0.1" in k]
    assert len(at_01) == 6 and all(
        "needs at least 10" in summary[k]["not_measurable"] for k in at_01
    )
    assert all(summary[k]["mean"] is None for k in at_01)
    json.dumps(summary, allow_nan=False)
    rows = long_rows({"a": summary})
    assert {r["metric"] for r in rows} >= {"auc", "tpr@fpr=0.1", "shadow_tpr@fpr=0.4"}
    assert all(r["ci_low"] is None for r in rows)  # intervals off: none


def test_one_target_has_no_shadow_figures():
    summary = summarize(SCORES[:1], KEEP, [0], [0.1], intervals=False)
    assert "auc" in summary and not any(k.startswith("shadow") for k in summary)
