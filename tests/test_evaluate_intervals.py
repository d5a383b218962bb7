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
    # members strictly above the order statistics: the ROC's points with at most j_lo − 1 and
    # at most j_hi false positives (the same as ≥ on continuous scores)
    hits_lo = int((pos > neg[j_lo - 1]).sum())
    hits_hi = int((pos > neg[j_hi]).sum())
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


def test_tpr_interval_on_tied_scores_by_hand():
    """The issue's example: a 0/1 score with 93% of non-members (and 97% of members) at 1. Its
    TPR at FPR 1% is 0 (no threshold but the one calling none has FPR ≤ 1%); the interval is
    read at that vertex, not at the other one (FPR 93%): [0, the Clopper–Pearson upper end of 0
    hits in 900 at level 97.5%]."""
    members = np.arange(1800) < 900
    scores = np.r_[np.arange(900) < 873, np.arange(900) < 837].astype(float)
    low, high = tpr_interval(scores, members, 0.01)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.0125 ** (1 / 900), rel=1e-9)  # beta(1, 900) quantile


#: Discrete scores with known population TPR and FPR per level (members, non-members): the
#: 0/1 score of a label-only attack, rare 0/1 scores (one level of population FPR 0.5% and one
#: of 0.9%, just under 1%), and a 5-level score.
DISCRETE = {
    "0/1": ([0.03, 0.97], [0.07, 0.93]),
    "0/1 rare": ([0.8, 0.2], [0.995, 0.005]),
    "0/1 near 1%": ([0.8, 0.2], [0.991, 0.009]),
    "5-level": ([0.3, 0.25, 0.2, 0.15, 0.1], [0.6, 0.25, 0.1, 0.041, 0.009]),
}
DISCRETE_FPRS = (0.1, 0.05, 0.01)


def population_tpr(members: list[float], non_members: list[float], fpr: float) -> float:
    """The largest P(member score ≥ t) over levels t with P(non-member score ≥ t) ≤ fpr
    (0: the threshold that calls none), in exact arithmetic."""
    tails = [
        (sum(map(Fraction, map(str, members[t:]))), sum(map(Fraction, map(str, non_members[t:]))))
        for t in range(len(members))
    ]
    return float(max((m for m, n in tails if n <= Fraction(str(fpr))), default=0))


@pytest.mark.parametrize("targets", [1, pytest.param(8, marks=pytest.mark.slow)])
def test_tpr_intervals_cover_on_discrete_scores(targets):
    """Over 200 simulated audits (1,000 members and 1,000 non-members per target), the interval
    of the mean over targets covers the population TPR at each FPR at least at the nominal 95%
    less three Monte-Carlo standard errors (4.6 points)."""
    repetitions, n = 200, 1000
    members = np.arange(2 * n) < n
    floor = 0.95 - 3 * np.sqrt(0.95 * 0.05 / repetitions)
    for case, (p1, p0) in DISCRETE.items():
        rng = np.random.default_rng(targets)
        covered = dict.fromkeys(DISCRETE_FPRS, 0)
        for _ in range(repetitions):
            ends = []
            for _ in range(targets):
                scores = np.r_[rng.choice(len(p1), n, p=p1), rng.choice(len(p0), n, p=p0)]
                ends.append([tpr_interval(scores, members, x) for x in DISCRETE_FPRS])
            low, high = np.mean(ends, axis=0).T
            for k, x in enumerate(DISCRETE_FPRS):
                covered[x] += low[k] <= population_tpr(p1, p0, x) <= high[k]
        coverage = {x: c / repetitions for x, c in covered.items()}
        print(f"{case}, {targets} target(s): coverage {coverage}")
        assert min(coverage.values()) >= floor, (case, coverage)


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
