"""Model-level figures per target, their mean and spread over targets, 95% intervals over records,
and the resolution rule: a figure at FPR x needs at least 1/x non-members per target."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from miakit.evaluate.intervals import auc_interval, tpr_interval
from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.roc import roc_curve
from miakit.evaluate.thresholds import PRIORS, calibrate

#: Under this many models, leave-one-out attacks fitted on every reference (`reference_counts:
#: all`) drift from 0.5 without membership signal (README).
SMALL_M = 32


def target_metrics(scores: np.ndarray, members: np.ndarray, fprs: Sequence[float]) -> dict:
    """One target's ROC figures: AUC, balanced accuracy, TPR at each FPR and the false positives
    behind it."""
    roc = roc_curve(scores, members)
    figures = {"auc": roc.auc(), "balanced_accuracy": roc.balanced_accuracy()}
    for x in fprs:
        figures[str(MetricKey("tpr", fpr=x))] = roc.tpr_at_fpr(x)
        figures[str(MetricKey("fp", fpr=x))] = roc.false_positives_at_fpr(x)
    return figures


def aggregate(values: Sequence[float], undefined: str | None = None) -> dict:
    """Mean and population std over targets, ignoring NaN (a figure undefined in a target, as a
    PPV where nothing is called member); NaN is stored as None so metrics.json stays standard
    JSON. Where the figure is undefined in every target, mean and std are None and `undefined`
    holds why (the reason given, else a generic one)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    figure = {
        "mean": float(finite.mean()) if len(finite) else None,
        "std": float(finite.std()) if len(finite) else None,
        "n_targets": len(finite),
        "per_target": [None if np.isnan(v) else float(v) for v in values],
    }
    if not len(finite):
        figure["undefined"] = undefined or "undefined in every target (a ratio over 0)"
    return figure


#: Why a PPV is undefined: it is a ratio over the records called member.
NOTHING_CALLED = "undefined: no record is called member at this threshold in any target"


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
        summary[str(MetricKey("shadow_tpr", fpr=x))] = aggregate(rows["tpr_shadow"])
        summary[str(MetricKey("shadow_fpr", fpr=x))] = aggregate(rows["fpr_shadow"])
        for p in priors:
            for name, kind in (("ppv", "target"), ("shadow_ppv", "shadow")):
                column = rows[str(MetricKey(f"ppv_{kind}", prior=p))]
                summary[str(MetricKey(name, fpr=x, prior=p))] = aggregate(column, NOTHING_CALLED)
    return summary


def unmeasurable(fprs: Sequence[float], non_members: int) -> dict[float, str]:
    """FPR → why figures at it are not measurable: TPR at FPR x needs at least 1/x non-members
    (below that the only FPR ≤ x the ROC offers is 0, whatever x is)."""
    reasons = {}
    for x in fprs:
        needed = math.ceil(1 / x - 1e-9)
        if non_members < needed:
            reasons[x] = (
                f"not measurable: FPR {x:g} needs at least {needed} non-members per target, "
                f"the smallest target has {non_members}"
            )
    return reasons


def mark_unmeasurable(summary: dict[str, dict], reasons: dict[float, str]) -> dict[str, dict]:
    """The summary with every figure read at an unmeasurable FPR replaced by its reason
    ({"mean": None, "std": None, "n_targets": 0, "not_measurable": reason})."""
    out = {}
    for name, figure in summary.items():
        x = MetricKey.parse(name).fpr
        reason = next((r for y, r in reasons.items() if x is not None and math.isclose(x, y)), None)
        out[name] = (
            figure
            if reason is None
            else {"mean": None, "std": None, "n_targets": 0, "not_measurable": reason}
        )
    return out


def target_intervals(
    scores: np.ndarray, members: np.ndarray, fprs: Sequence[float]
) -> dict[str, tuple[float, float]]:
    """One target's 95% intervals over its records: AUC and TPR at each FPR (`intervals`)."""
    out = {"auc": auc_interval(scores, members)}
    roc = roc_curve(scores, members)
    for x in fprs:
        out[str(MetricKey("tpr", fpr=x))] = tpr_interval(scores, members, x, roc=roc)
    return out


def summarize(
    scores: np.ndarray,
    keep: np.ndarray,
    targets: Sequence[int],
    fprs: Sequence[float],
    *,
    priors: Sequence[float] = PRIORS,
    intervals: bool = True,
) -> dict[str, dict]:
    """For scores [T, N] of `targets` with membership keep[targets]: metric → mean, std (over
    targets, population std), n_targets and the per-target values. AUC and TPR at each FPR also
    get ci_low and ci_high: the mean over targets of each target's 95% interval over its records
    (`intervals.INTERVAL_NOTE`). With two targets or more, the realistic figures are added. Figures
    at an FPR x with fewer than 1/x non-members for some target are marked not measurable."""
    per_target = [target_metrics(scores[i], keep[t], fprs) for i, t in enumerate(targets)]
    summary = {name: aggregate([f[name] for f in per_target]) for name in per_target[0]}
    if intervals:
        bounds = [target_intervals(scores[i], keep[t], fprs) for i, t in enumerate(targets)]
        for name in bounds[0]:
            low, high = np.mean([b[name] for b in bounds], axis=0)
            summary[name] |= {"ci_low": float(low), "ci_high": float(high)}
    if len(targets) >= 2:
        summary |= realistic_figures(scores, keep, targets, fprs, priors)
    non_members = int(min((~keep[t]).sum() for t in targets))
    return mark_unmeasurable(summary, unmeasurable(fprs, non_members))


def small_m_warning(
    attack: str, num_models: int, leave_one_out: bool, reference_counts: str | None
) -> str | None:
    """The README's caveat, where it applies: leave-one-out with few models, by an attack fitted
    on every reference (`reference_counts`: the attack's option, None where it has none)."""
    if leave_one_out and reference_counts == "all" and num_models < SMALL_M:
        return (
            f"only {num_models} models (< {SMALL_M}) and reference_counts: all: leave-one-out "
            f"{attack} drifts from 0.5 without membership signal (a member of a record has one "
            "IN reference fewer and one OUT more than a non-member); reference_counts: equal "
            "does not"
        )
    return None


def long_rows(metrics: dict[str, dict[str, dict]]) -> list[dict]:
    """metrics.csv rows (attack, metric, mean, std, n_targets, ci_low, ci_high, not_measurable,
    undefined) from {attack: summarize(...)}; figures without an interval leave ci_low and
    ci_high empty, measurable ones leave not_measurable empty, defined ones undefined."""
    return [
        {
            "attack": attack,
            "metric": name,
            "mean": f["mean"],
            "std": f["std"],
            "n_targets": f["n_targets"],
            "ci_low": f.get("ci_low"),
            "ci_high": f.get("ci_high"),
            "not_measurable": f.get("not_measurable"),
            "undefined": f.get("undefined"),
        }
        for attack, figures in metrics.items()
        for name, f in figures.items()
    ]


def figure_words(figure: dict | None) -> str | None:
    """What to print instead of a number for a figure of metrics.json that has none: "not
    measurable", "undefined", or "–" where it was not computed; None where it has a number."""
    if figure is None:
        return "–"
    if "not_measurable" in figure:
        return "not measurable"
    if "undefined" in figure:
        return "undefined"
    return "–" if figure.get("mean") is None else None
