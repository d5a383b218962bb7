"""Histogram of one record's losses with and without it in training, as the with/without test
sees them: both Gaussian fits and both thresholds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from miakit.evaluate.single_point import PowerAtAlpha
from miakit.store import write_atomic


def plot_with_without(
    path: Path, title: str, losses_with: np.ndarray, losses_without: np.ndarray, power: PowerAtAlpha
) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    both = np.concatenate([losses_with, losses_without])
    bins = np.linspace(both.min(), both.max(), 30)
    grid = np.linspace(bins[0], bins[-1], 200)
    for losses, side, std, color, name in [
        (losses_with, "with", power.std_with, "tab:red", "trained with x"),
        (losses_without, "without", power.std_without, "tab:blue", "trained without x"),
    ]:
        ax.hist(losses, bins=bins, density=True, alpha=0.45, color=color, label=name)
        if std > 0:
            ax.plot(grid, power.gaussian_density(grid, side), color=color, lw=1.5)
    ax.axvline(
        power.threshold_empirical,
        color="black",
        ls="--",
        lw=1,
        label=f"empirical threshold (α={power.alpha:g})",
    )
    ax.axvline(
        power.threshold_gaussian,
        color="gray",
        ls=":",
        lw=1.5,
        label=f"Gaussian threshold ({power.gaussian_fit} fit)",
    )
    ax.set(
        xlabel="loss of x",
        ylabel="density",
        title=f"{title}: power {power.power_empirical:.2f} "
        f"[{power.power_ci_low:.2f}, {power.power_ci_high:.2f}]",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
