"""95% intervals over records, and the resolution rule (issue 17, items 5 and 6).

Coverage is measured by simulation: Gaussian member and non-member scores, whose AUC and TPR at
FPR x are known in closed form, and the intervals must cover them in at least 90% of repetitions.
"""

from fractions import Fraction
from math import comb

import numpy as np
import pytest
from scipy.stats import beta, norm
from sklearn.metrics import roc_auc_score

from miakit.evaluate.intervals import auc_interval, tpr_interval
from miakit.evaluate.metrics import summarize, unmeasurable

SHIFT = 1.5  # members N(1.5, 1), non-members N(0, 1)
TRUTH = {
    "auc": norm.cdf(SHIFT / np.sqrt(2)),
    "tpr@fpr=0.01": norm.sf(norm.isf(0.01) - SHIFT),
    "tpr@fpr=0.001": norm.sf(norm.isf(0.001) - SHIFT),
}


def test_auc_interval_is_delong_by_brute_force():
    rng = np.random.default_rng(0)
    members = rng.random(60) < 0.4
    scores = np.round(rng.normal(size=60) + members, 1)  # ties
    pos, neg = scores[members], scores[~members]
    psi = [[1.0 if p > q else 0.5 if p == q else 0.0 for q in neg] for p in pos]
    v10 = np.array([np.mean(row) for row in psi])
    v01 = np.array([np.mean(col) for col in zip(*psi, strict=True)])
    auc = v10.mean()
    assert auc == pytest.approx(roc_auc_score(members, scores))
    se = np.sqrt(np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg))
    low, high = auc_interval(scores, members)
    assert low == pytest.approx(auc - 1.959963984540054 * se)
    assert high == pytest.approx(auc + 1.959963984540054 * se)


def test_tpr_interval_from_order_statistics_and_clopper_pearson_by_hand():
    rng = np.random.default_rng(1)
    members = np.arange(3000) < 1000
    scores = rng.normal(size=3000) + members
    neg = sorted(scores[~members], reverse=True)
    pos = scores[members]
    # C ~ Binomial(2000, 0.01): its α/4 and 1 − α/4 quantiles in exact rational arithmetic
    p = Fraction(1, 100)
    cdf = np.cumsum([comb(2000, k) * p**k * (1 - p) ** (2000 - k) for k in range(100)])
    j_lo = int(np.argmax(cdf >= Fraction(1, 80)))
    j_hi = int(np.argmax(cdf >= 1 - Fraction(1, 80)))
    hits_lo = int((pos >= neg[j_lo - 1]).sum())
    hits_hi = int((pos >= neg[j_hi]).sum())
    # Clopper–Pearson at level 97.5% from the beta quantiles
    low = beta.ppf(0.0125, hits_lo, 1000 - hits_lo + 1)
    high = beta.ppf(1 - 0.0125, hits_hi + 1, 1000 - hits_hi)
    got = tpr_interval(scores, members, 0.01)
    assert got == pytest.approx((low, high), rel=1e-9)


@pytest.mark.parametrize("targets", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_nominal_95_percent_intervals_cover_the_true_figures(targets):
    """Over 200 simulated audits (2,000 members and 2,000 non-members per target), each interval
    of the mean over targets covers the closed-form truth at least 90% of the time."""
    rng = np.random.default_rng(targets)
    repetitions, n = 200, 2000
    keep = np.tile(np.arange(2 * n) < n, (targets, 1))
    covered = dict.fromkeys(TRUTH, 0)
    for _ in range(repetitions):
        scores = rng.normal(size=keep.shape) + SHIFT * keep
        summary = summarize(scores, keep, range(targets), [0.01, 0.001])
        for name, truth in TRUTH.items():
            covered[name] += summary[name]["ci_low"] <= truth <= summary[name]["ci_high"]
    coverage = {name: count / repetitions for name, count in covered.items()}
    print(f"coverage over {repetitions} audits of {targets} target(s): {coverage}")
    assert all(c >= 0.9 for c in coverage.values()), coverage


def test_a_figure_at_fpr_x_needs_one_over_x_non_members():
    for x in (0.01, 0.001, 0.0001, 0.00001, 0.003):
        needed = int(np.ceil(Fraction(1) / Fraction(str(x))))
        assert x not in unmeasurable([x], needed)
        assert "needs at least" in unmeasurable([x], needed - 1)[x]


def test_figures_below_the_resolution_are_not_measured():
    rng = np.random.default_rng(3)
    keep = np.arange(1800)[None, :] < 900  # 900 non-members, as in the issue
    scores = rng.normal(size=(1, 1800)) + keep
    summary = summarize(scores, keep, [0], [0.01, 0.001, 0.0001])
    assert summary["tpr@fpr=0.01"]["mean"] is not None
    for x in ("0.001", "0.0001"):
        for name in (f"tpr@fpr={x}", f"fp@fpr={x}"):
            assert summary[name]["mean"] is None and "900" in summary[name]["not_measurable"]


@pytest.mark.parametrize("trials", [1, 2, 37, 25_000])
def test_clopper_pearson_equals_scipys_exact_binomial_interval(trials):
    from scipy.stats import binomtest

    from miakit.evaluate.intervals import clopper_pearson

    for hits in sorted({0, 1, trials // 3, trials - 1, trials}):
        expected = binomtest(hits, trials).proportion_ci(0.975, method="exact")
        low, high = clopper_pearson(hits, trials, 0.975)
        assert low == pytest.approx(expected.low, abs=1e-10)
        assert high == pytest.approx(expected.high, abs=1e-10)
