"""Model-level figures per target, and their mean and spread over targets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from miakit.evaluate.roc import roc_curve


def tpr_metric_name(fpr: float) -> str:
    return f"tpr@fpr={fpr:g}"


def target_metrics(scores: np.ndarray, members: np.ndarray, fprs: Sequence[float]) -> dict:
    roc = roc_curve(scores, members)
    figures = {"auc": roc.auc(), "balanced_accuracy": roc.balanced_accuracy()}
    figures.update({tpr_metric_name(x): roc.tpr_at_fpr(x) for x in fprs})
    return figures


def summarize(
    scores: np.ndarray, keep: np.ndarray, targets: Sequence[int], fprs: Sequence[float]
) -> dict[str, dict]:
    """For scores [T, N] of `targets` with membership keep[targets]: metric → mean, std (over
    targets, population std), n_targets and the per-target values."""
    per_target = [target_metrics(scores[i], keep[t], fprs) for i, t in enumerate(targets)]
    summary = {}
    for name in per_target[0]:
        values = np.array([figures[name] for figures in per_target])
        summary[name] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "n_targets": len(values),
            "per_target": values.tolist(),
        }
    return summary


def long_rows(metrics: dict[str, dict[str, dict]]) -> list[dict]:
    """metrics.csv rows (attack, metric, mean, std, n_targets) from {attack: summarize(...)}."""
    return [
        {
            "attack": attack,
            "metric": name,
            "mean": f["mean"],
            "std": f["std"],
            "n_targets": f["n_targets"],
        }
        for attack, figures in metrics.items()
        for name, f in figures.items()
    ]
