"""Thresholds an attacker could deploy, and what they achieve under realistic priors.

A threshold τ read off the target's own ROC at FPR x (target-calibrated; the operating-point
rule of `evaluate.roc`, so that `score ≥ τ` calls exactly the records the figure counts, ties
together) uses the target's membership labels, which no attacker has: it overstates risk. A deployable attacker calibrates on
models whose membership it knows: the shadow-calibrated τ of a target is the median of the other
targets' τ (each of them scored leave-one-out, exactly as the attacker scores a shadow model). Its
achieved TPR′ and FPR′ on the target may differ from x. Under a prior π of members among the
records queried, the precision of "member" calls is PPV = π·TPR / (π·TPR + (1 − π)·FPR).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from miakit.errors import MiakitError
from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.roc import roc_curve

PRIORS = (0.01, 0.1, 0.5)


def ppv(tpr: float, fpr: float, prior: float) -> float:
    """Positive predictive value; NaN when nothing is called member (TPR = FPR = 0), which
    metrics.json records as `undefined` (`metrics.aggregate`)."""
    called = prior * tpr + (1 - prior) * fpr
    return float(prior * tpr / called) if called > 0 else float("nan")


def called(scores: np.ndarray, members: np.ndarray, tau: float) -> tuple[int, int]:
    """(true positives, false positives) of the rule "member iff score ≥ τ"."""
    flagged = np.asarray(scores) >= tau
    return int(flagged[members].sum()), int(flagged[~members].sum())


def shadow_thresholds(taus: np.ndarray) -> np.ndarray:
    """For each target, the median of the other targets' τ (needs at least two targets)."""
    taus = np.asarray(taus, dtype=np.float64)
    if len(taus) < 2:
        raise MiakitError("shadow calibration needs at least two targets (evaluate.targets ≥ 2)")
    return np.array([np.median(np.delete(taus, i)) for i in range(len(taus))])


def calibrate(
    scores: np.ndarray,
    keep: np.ndarray,
    targets: Sequence[int],
    fprs: Sequence[float],
    priors: Sequence[float] = PRIORS,
) -> pd.DataFrame:
    """One row per (target, fpr): target- and shadow-calibrated τ, the TPR, FPR and false
    positives each achieves on the target, and each one's PPV at the priors.
    scores [T, N]; row i belongs to model targets[i]."""
    rows = []
    rocs = [roc_curve(scores[i], keep[t]) for i, t in enumerate(targets)]  # one sort per target
    for x in fprs:
        own = np.array([roc.threshold_at_fpr(x) for roc in rocs])
        taus = {"target": own, "shadow": shadow_thresholds(own)}
        for i, t in enumerate(targets):
            members = keep[t]
            row: dict = {"target": t, "fpr": x}
            for kind, tau in taus.items():
                tp, fp = called(scores[i], members, tau[i])
                tpr, fpr = tp / members.sum(), fp / (~members).sum()
                row |= {
                    f"tau_{kind}": tau[i],
                    f"tpr_{kind}": tpr,
                    f"fpr_{kind}": fpr,
                    f"fp_{kind}": fp,
                }
                row |= {str(MetricKey(f"ppv_{kind}", prior=p)): ppv(tpr, fpr, p) for p in priors}
            rows.append(row)
    return pd.DataFrame(rows)
