"""Model-level figures per target, their mean and spread over targets, and bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from miakit.evaluate.bootstrap import bootstrap_mean_intervals
from miakit.evaluate.roc import roc_curve
from miakit.evaluate.thresholds import PRIORS, calibrate

RESAMPLES = 200


def tpr_metric_name(fpr: float) -> str:
    return f"tpr@fpr={fpr:g}"


def fp_metric_name(fpr: float) -> str:
    """The count of false positives behind tpr_metric_name(fpr)."""
    return f"fp@fpr={fpr:g}"


def target_metrics(
    scores: np.ndarray,
    members: np.ndarray,
    fprs: Sequence[float],
    weights: np.ndarray | None = None,
) -> dict:
    """One target's ROC figures; with weights [B, N] (bootstrap resamples) each is an array [B]."""
    roc = roc_curve(scores, members, weights)
    figures = {"auc": roc.auc(), "balanced_accuracy": roc.balanced_accuracy()}
    for x in fprs:
        figures[tpr_metric_name(x)] = roc.tpr_at_fpr(x)
        figures[fp_metric_name(x)] = roc.false_positives_at_fpr(x)
    return figures


def aggregate(values: Sequence[float]) -> dict:
    """Mean and population std over targets, ignoring NaN (a PPV where nothing is called member);
    NaN is stored as None so metrics.json stays standard JSON."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return {
        "mean": float(finite.mean()) if len(finite) else None,
        "std": float(finite.std()) if len(finite) else None,
        "n_targets": len(finite),
        "per_target": [None if np.isnan(v) else float(v) for v in values],
    }


def realistic_figures(
    scores: np.ndarray,
    keep: np.ndarray,
    targets: Sequence[int],
    fprs: Sequence[float],
    priors: Sequence[float] = PRIORS,
) -> dict[str, dict]:
    """Shadow-calibrated TPR′ and FPR′, and PPV of both thresholds, per target and aggregated."""
    table = calibrate(scores, keep, targets, fprs, priors)
    summary = {}
    for x, rows in table.groupby("fpr", sort=False):
        summary[f"shadow_tpr@fpr={x:g}"] = aggregate(rows["tpr_shadow"])
        summary[f"shadow_fpr@fpr={x:g}"] = aggregate(rows["fpr_shadow"])
        for p in priors:
            summary[f"ppv@fpr={x:g},prior={p:g}"] = aggregate(rows[f"ppv_target@prior={p:g}"])
            summary[f"shadow_ppv@fpr={x:g},prior={p:g}"] = aggregate(
                rows[f"ppv_shadow@prior={p:g}"]
            )
    return summary


def summarize(
    scores: np.ndarray,
    keep: np.ndarray,
    targets: Sequence[int],
    fprs: Sequence[float],
    *,
    priors: Sequence[float] = PRIORS,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, dict]:
    """For scores [T, N] of `targets` with membership keep[targets]: metric → mean, std (over
    targets, population std), n_targets and the per-target values. ROC figures also get a 95%
    bootstrap interval of their mean (ci_low, ci_high; records resampled, seeded by `seed`;
    none when resamples is 0); with two targets or more, the realistic figures are added."""
    per_target = [target_metrics(scores[i], keep[t], fprs) for i, t in enumerate(targets)]
    summary = {name: aggregate([f[name] for f in per_target]) for name in per_target[0]}
    if resamples:
        intervals = bootstrap_mean_intervals(
            lambda s, m, w: target_metrics(s, m, fprs, w), scores, keep, targets, resamples, seed
        )
        for name, (low, high) in intervals.items():
            summary[name] |= {"ci_low": low, "ci_high": high}
    if len(targets) >= 2:
        summary |= realistic_figures(scores, keep, targets, fprs, priors)
    return summary


def long_rows(metrics: dict[str, dict[str, dict]]) -> list[dict]:
    """metrics.csv rows (attack, metric, mean, std, n_targets, ci_low, ci_high) from
    {attack: summarize(...)}; figures without an interval leave ci_low and ci_high empty."""
    return [
        {
            "attack": attack,
            "metric": name,
            "mean": f["mean"],
            "std": f["std"],
            "n_targets": f["n_targets"],
            "ci_low": f.get("ci_low"),
            "ci_high": f.get("ci_high"),
        }
        for attack, figures in metrics.items()
        for name, f in figures.items()
    ]
