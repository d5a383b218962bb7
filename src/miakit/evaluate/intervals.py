"""95% intervals of one target's AUC and TPR at FPR x, over its records.

Each interval is of the figure the target model would have on the whole record distribution (the
population ROC), from the finite records it was evaluated on. The figures in metrics.json are
means over targets; beside them stand the means of the targets' interval ends, which say how far a
typical target's figure may be from its true value (they do not shrink with more targets).

Why not the record bootstrap it replaces: TPR at FPR x and balanced accuracy are read at an
operating point set by the few highest-scoring non-members, and a resample duplicates or drops
those very records, so the resampled figures are shifted (at FPR 0.1% with ~900 non-members the
threshold drops whenever the top non-member is left out, in 37% of resamples) and their percentile
interval can exclude the figure itself; averaging over targets then narrowed it around the shift.

- AUC: DeLong et al. (Biometrics 1988): the variance of the Mann–Whitney estimate from its
  placement values (mid-ranks for ties), normal interval clipped to [0, 1].
- TPR at FPR x, distribution-free (order statistics and Clopper–Pearson from beta quantiles):
  the true threshold q (the non-members' 1 − x quantile) has C ~ Binomial(n₀, x) non-members above
  it, so with probability ≥ 1 − α/2 it lies between two non-member order statistics; the members'
  hit counts at those two scores give Clopper–Pearson bounds at level 1 − α/2. Both steps miss with
  probability ≤ α in all, so the interval covers with probability ≥ 1 − α (conservatively).

Balanced accuracy (a maximum over thresholds) and false-positive counts get no interval.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta, binom, norm, rankdata

CONFIDENCE = 0.95

#: What the intervals in metrics.json are of; stored there and shown in the report.
INTERVAL_NOTE = (
    "95% interval over records of one target (AUC: DeLong; TPR at FPR x: order statistics with "
    "Clopper-Pearson), averaged over targets: ci_low and ci_high are the means of the targets' "
    "interval ends"
)


def auc_interval(
    scores: np.ndarray, members: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """DeLong's normal interval of the AUC (ties count one half); scores, members [N]."""
    pos, neg = scores[members], scores[~members]
    n1, n0 = len(pos), len(neg)
    ranks = rankdata(np.concatenate([pos, neg]))
    # placement values: the share of the other group a record beats (mid-ranks count ties half)
    v10 = (ranks[:n1] - rankdata(pos)) / n0
    v01 = 1 - (ranks[n1:] - rankdata(neg)) / n1
    auc = v10.mean()
    se = np.sqrt(v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0) if min(n1, n0) > 1 else np.inf
    z = norm.ppf(0.5 + confidence / 2)
    return float(max(auc - z * se, 0.0)), float(min(auc + z * se, 1.0))


def clopper_pearson(hits: int, trials: int, level: float) -> tuple[float, float]:
    """The exact (Clopper–Pearson) two-sided interval of a binomial proportion at `level`: beta
    quantiles, with the ends 0 at no hit and 1 at all hits (as `scipy.stats.binomtest`'s
    `proportion_ci(method="exact")`, without its root finding)."""
    tail = (1 - level) / 2
    low = beta.ppf(tail, hits, trials - hits + 1) if hits > 0 else 0.0
    high = beta.ppf(1 - tail, hits + 1, trials - hits) if hits < trials else 1.0
    return float(low), float(high)


def tpr_interval(
    scores: np.ndarray,
    members: np.ndarray,
    max_fpr: float,
    confidence: float = CONFIDENCE,
    *,
    ordered_non_members: np.ndarray | None = None,
) -> tuple[float, float]:
    """Distribution-free interval of the TPR at FPR `max_fpr` (module docstring); scores,
    members [N]. ordered_non_members: the non-members' scores sorted in decreasing order, when
    the caller has them (one sort per target for all FPRs)."""
    alpha = 1 - confidence
    neg = np.sort(scores[~members])[::-1] if ordered_non_members is None else ordered_non_members
    pos = scores[members]
    n0 = len(neg)
    # Pr[C < j_lo] ≤ α/4 and Pr[C > j_hi] ≤ α/4 for C ~ Binomial(n0, x) non-members above q
    j_lo = int(binom.ppf(alpha / 4, n0, max_fpr))
    j_hi = int(binom.ppf(1 - alpha / 4, n0, max_fpr))
    level = 1 - alpha / 2
    low = 0.0
    if j_lo >= 1:  # q < the j_lo-th highest non-member score
        low = clopper_pearson(int((pos >= neg[j_lo - 1]).sum()), len(pos), level)[0]
    high = 1.0
    if j_hi < n0:  # q ≥ the (j_hi + 1)-th highest non-member score
        high = clopper_pearson(int((pos >= neg[j_hi]).sum()), len(pos), level)[1]
    return float(low), float(high)
