"""The report's figures, as matplotlib figures the HTML embeds; each answers one question a reader
of an audit asks."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from miakit.evaluate.calibration import Reliability
from miakit.evaluate.roc import roc_curve
from miakit.evaluate.thresholds import PRIORS, ppv


def png_base64(fig: Figure) -> str:
    """The figure as a base64 PNG (closed afterwards), for an <img src="data:..."> tag."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


#: Line styles cycled through with the colours, so that curves stay apart in grey print too.
ROC_STYLES = ("-", "--", "-.", ":")


def roc_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    floor: float,
    styles: Mapping[str, dict] | None = None,
    strongest: str | None = None,
) -> Figure:
    """Log-log ROC, one line per label from (scores, membership) pooled over targets: the low-FPR
    corner, where an attack is sure, is what matters for privacy (Carlini et al. 2022). `styles`
    gives plot keywords per label; otherwise each label gets its own colour and line style, the
    `strongest` is drawn thickest, and labels whose curves coincide exactly (attacks that rank
    the records alike, e.g. lira-global and loss) share one line named after all of them."""
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    lines: list[tuple[object, list[str]]] = []  # (ROC, the labels whose curve it is)
    for label, (scores, members) in curves.items():
        roc = roc_curve(scores, members)
        for other, labels in lines:
            if np.array_equal(other.fpr, roc.fpr) and np.array_equal(other.tpr, roc.tpr):
                labels.append(label)
                break
        else:
            lines.append((roc, [label]))
    for i, (roc, labels) in enumerate(lines):
        style = (styles or {}).get(labels[0]) or {
            "color": f"C{i % 10}",
            "ls": ROC_STYLES[i % len(ROC_STYLES)],
            "lw": 3.0 if strongest in labels else 1.5,
        }
        name = " = ".join(labels) + (" (strongest)" if strongest in labels else "")
        ax.plot(roc.fpr, roc.tpr, label=f"{name} (AUC {roc.auc():.3f})", **style)
    finish_log_roc(fig, ax, floor)
    return fig


def finish_log_roc(fig: Figure, ax: plt.Axes, floor: float, title: str | None = None) -> None:
    """Chance line, log axes from `floor` (one record's share) to 1, labels and legend."""
    ax.plot([floor, 1], [floor, 1], ls="--", color="gray", lw=1, label="chance")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(floor, 1),
        ylim=(floor, 1),
        xlabel="false positive rate",
        ylabel="true positive rate",
    )
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()


#: A score whose 0.5–99.5 percentile range exceeds this many interquartile ranges (a Gaussian's:
#: 3.8) is heavy-tailed: drawn on an asinh scale.
HEAVY_TAILS = 10


def histogram_scale(name: str, scores: np.ndarray) -> tuple[np.ndarray, str]:
    """The scale on which an attack's scores spread out: LOSS (−cross-entropy, crowded just
    below 0 for every record a model fits) as the log-odds φ = log p_y − log(1 − p_y) of the
    true-class probability it implies (Carlini et al. 2022); heavy-tailed scores (likelihood
    ratios, crowded at their median with long tails) as asinh((s − median) / IQR), linear
    within an interquartile range of the median and logarithmic beyond; others as they are."""
    if name == "loss":
        # 1 − p_y, kept above 1e-30 so that a record fitted to p_y = 1 stays on the plot
        rest = np.maximum(-np.expm1(np.minimum(scores, 0.0)), 1e-30)
        return scores - np.log(rest), "φ = log p_y − log(1 − p_y)"
    finite = scores[np.isfinite(scores)]
    if finite.size:
        low, q1, median, q3, high = np.percentile(finite, [0.5, 25, 50, 75, 99.5])
        iqr = q3 - q1
        if iqr > 0 and high - low > HEAVY_TAILS * iqr:
            scaled = np.arcsinh((scores - median) / iqr)
            return scaled, f"asinh((score − {median:.3g}) / {iqr:.3g})"
    return scores, "score"


def histogram_figure(scores: Mapping[str, np.ndarray], members: np.ndarray) -> Figure:
    """Member and non-member score densities per attack (scores [T, N], members [T, N]), each on
    its `histogram_scale`; the range is the 0.5–99.5 percentiles so a few extreme scores do not
    flatten the rest."""
    cols = min(3, len(scores))
    rows = -(-len(scores) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, raw) in zip(axes.flat, scores.items(), strict=False):
        s, axis = histogram_scale(name, raw)
        finite = np.isfinite(s)
        low, high = np.percentile(s[finite], [0.5, 99.5])
        bins = np.linspace(low, high, 50) if high > low else 10
        for mask, color, label in (
            (members, "tab:red", "members"),
            (~members, "tab:blue", "non-members"),
        ):
            density, edges = np.histogram(s[mask & finite], bins=bins, density=True)
            ax.stairs(density, edges, fill=True, alpha=0.5, color=color, label=label)
        ax.set(title=name, xlabel=f"{axis} (higher = member)", ylabel="density")
        ax.legend(fontsize=7)
    for ax in axes.flat[len(scores) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def ppv_figure(thresholds: pd.DataFrame, fpr: float) -> Figure:
    """PPV of "member" calls against the prior share of members, from the mean achieved TPR and
    FPR over targets: solid shadow-calibrated (deployable), dashed target-calibrated (optimistic)."""
    priors = np.logspace(-3, np.log10(0.5), 100)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    rows = thresholds[thresholds["fpr"] == fpr]
    for i, (attack, r) in enumerate(rows.groupby("attack", sort=False)):
        color = f"C{i % 10}"
        for kind, style in (("shadow", "-"), ("target", "--")):
            tpr, fp_rate = r[f"tpr_{kind}"].mean(), r[f"fpr_{kind}"].mean()
            label = f"{attack}" if kind == "shadow" else None
            ax.plot(priors, [ppv(tpr, fp_rate, p) for p in priors], style, color=color, label=label)
    for p in PRIORS:
        ax.axvline(p, color="gray", lw=0.6, ls=":")
    ax.plot(priors, priors, color="gray", lw=1, label="prior (guessing)")
    ax.set(
        xscale="log",
        ylim=(0, 1.02),
        xlabel="prior share of members π",
        ylabel="PPV",
        title=f"thresholds for FPR {fpr:g}: shadow-calibrated solid, target-calibrated dashed",
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def scatter_figure(
    x: np.ndarray, y: np.ndarray, flagged: np.ndarray, x_label: str, y_label: str, title: str
) -> Figure:
    """One target's members: a cheap ranking (x) against an attack's score (y), flagged members
    (called member at FPR 0.1%) in red."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(x[~flagged], y[~flagged], s=6, alpha=0.4, color="tab:blue", label="members")
    ax.scatter(x[flagged], y[flagged], s=12, color="tab:red", label="flagged at FPR 0.1%")
    ax.set(xlabel=x_label, ylabel=y_label, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reliability_figure(diagrams: Mapping[str, Reliability]) -> Figure:
    """Accuracy against confidence per bin; bars below the diagonal are overconfidence."""
    fig, axes = plt.subplots(1, len(diagrams), figsize=(4.2 * len(diagrams), 4), squeeze=False)
    for ax, (label, d) in zip(axes.flat, diagrams.items(), strict=True):
        centers = (d.edges[:-1] + d.edges[1:]) / 2
        width = d.edges[1] - d.edges[0]
        filled = d.counts > 0
        ax.bar(centers[filled], d.accuracy[filled], width=width, edgecolor="black", alpha=0.7)
        ax.plot([0, 1], [0, 1], ls="--", color="gray")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence",
            ylabel="accuracy",
            title=f"{label}: ECE {d.ece():.3f}, OE {d.overconfidence():.3f}",
        )
    fig.tight_layout()
    return fig
