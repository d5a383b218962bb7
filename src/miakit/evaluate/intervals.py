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
- TPR at FPR x, distribution-free, for continuous and discrete scores alike (order statistics
  and Clopper–Pearson from beta quantiles). The figure is the TPR of the population's operating
  point: the rule "score ≥ q" (or "> q" where the non-members' scores have an atom at q) with the
  largest TPR among those whose population FPR is ≤ x. The interval's ends are Clopper–Pearson
  bounds at level 1 − α/2 on the members' hits at two of the sample's operating points
  (`roc.Roc.point_within`, ties never split): the one with at most j_lo − 1 false positives for
  the lower end, at most j_hi for the upper, where j_lo and j_hi are the α/4 and 1 − α/4 quantiles
  of Binomial(n₀, x). The point with at most j_hi false positives calls every record above the
  (j_hi + 1)-th highest non-member score w; it misses part of the population's point only where
  w is itself a threshold of population FPR ≤ x with j_hi + 1 non-members at or above it, which
  happens with probability ≤ Pr[Binomial(n₀, x) > j_hi] ≤ α/4. Likewise the point with at most
  j_lo − 1 false positives calls more than the population's point only where a threshold of
  population FPR > x has fewer than j_lo non-members at or above it: probability ≤ α/4. The
  points depend on the non-members alone, so the Clopper–Pearson steps hold given them, and the
  interval covers with probability ≥ 1 − α (conservatively). Since j_lo − 1 ≤ ⌊n₀x⌋ ≤ j_hi (the
  median of a binomial is ⌊n₀x⌋ or ⌈n₀x⌉), the figure's own point lies between the two, and the
  interval contains the figure. (Counting members at or above the order statistics instead, as
  for continuous scores, is invalid when non-members tie there: a 0/1 score whose TPR at FPR 1%
  is 0 got the interval of its other vertex, [92.8%, 96.3%].)

Balanced accuracy (a maximum over thresholds) and false-positive counts get no interval.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta, binom, norm, rankdata

from miakit.evaluate.roc import Roc, roc_curve

CONFIDENCE = 0.95

#: What the intervals in metrics.json are of; stored there and shown in the report.
INTERVAL_NOTE = (
    "95% interval over records of one target (AUC: DeLong; TPR at FPR x: order statistics with "
    "Clopper-Pearson, at the ROC's vertices), averaged over targets: ci_low and ci_high are the means of the targets' "
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
    roc: Roc | None = None,
) -> tuple[float, float]:
    """Distribution-free interval of the TPR at FPR `max_fpr` (module docstring); scores,
    members [N]. roc: their `roc_curve`, when the caller has it (one sort per target for all
    FPRs)."""
    roc = roc_curve(scores, members) if roc is None else roc
    alpha = 1 - confidence
    n0, n1 = roc.non_members, roc.members
    # Pr[C < j_lo] ≤ α/4 and Pr[C > j_hi] ≤ α/4 for C ~ Binomial(n0, x)
    j_lo = int(binom.ppf(alpha / 4, n0, max_fpr))
    j_hi = int(binom.ppf(1 - alpha / 4, n0, max_fpr))
    level = 1 - alpha / 2
    low = 0.0
    if j_lo >= 1:
        hits = int(roc.true_positives[roc.point_within(j_lo - 1)])
        low = clopper_pearson(hits, n1, level)[0]
    high = 1.0
    if j_hi < n0:
        hits = int(roc.true_positives[roc.point_within(j_hi)])
        high = clopper_pearson(hits, n1, level)[1]
    return float(low), float(high)
