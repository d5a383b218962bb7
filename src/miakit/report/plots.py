"""Figures written as PNG files next to the metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from miakit.evaluate.roc import roc_curve
from miakit.report.figures import finish_log_roc
from miakit.store import write_atomic


def plot_roc(
    path: Path, attack: str, scores: np.ndarray, keep: np.ndarray, targets: Sequence[int]
) -> None:
    """Log-log ROC of one attack: each target's curve faintly, all targets pooled in bold.

    Log axes show the low-FPR region that matters for privacy (Carlini et al. 2022, Fig. 1).
    """
    fig, ax = plt.subplots(figsize=(5, 5))
    for i, t in enumerate(targets):
        roc = roc_curve(scores[i], keep[t])
        ax.plot(roc.fpr, roc.tpr, color="tab:blue", alpha=0.15, lw=0.8)
    pooled = roc_curve(scores.ravel(), keep[list(targets)].ravel())
    ax.plot(
        pooled.fpr,
        pooled.tpr,
        color="tab:blue",
        lw=2,
        label=f"all {len(targets)} targets pooled (AUC {pooled.auc():.3f})",
    )
    finish_log_roc(fig, ax, 1.0 / keep.shape[1], title=f"ROC: {attack}")
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
