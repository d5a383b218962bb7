"""Statistics of the with/without experiment for one record: thresholds, power, error rate.

A model trained *with* record x tends to give x a lower loss than one trained *without* it. At a
false-positive rate α, the attacker calls "member" when x's loss is below a threshold t:
- empirical: t = the α-quantile of the without-losses;
- Gaussian (Neyman–Pearson for a Gaussian null): t = μ₀ + σ₀·Φ⁻¹(α), with μ₀, σ₀ fitted to the
  without-losses.
Power is the fraction of with-losses below t, with a Clopper–Pearson interval; the Gaussian fit of
the with-losses also predicts it as Φ((t − μ₁)/σ₁).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta, norm

from miakit.errors import MiakitError


@dataclass(frozen=True)
class PowerAtAlpha:
    alpha: float
    threshold_empirical: float
    threshold_gaussian: float
    power_empirical: float
    power_ci_low: float
    power_ci_high: float
    power_gaussian: float
    mean_with: float
    std_with: float
    mean_without: float
    std_without: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval: conservative, and honest for the few rounds this experiment has."""
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = (
        1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    )
    return low, high


def power_at_alpha(
    losses_with: np.ndarray, losses_without: np.ndarray, alpha: float
) -> PowerAtAlpha:
    """Both thresholds and the power of the loss test at false-positive rate alpha."""
    losses_with = np.asarray(losses_with, dtype=np.float64)
    losses_without = np.asarray(losses_without, dtype=np.float64)
    if not 0 < alpha < 1:
        raise MiakitError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if len(losses_with) < 2 or len(losses_without) < 2:
        raise MiakitError("the with/without test needs at least two rounds of each")
    t_emp = float(np.quantile(losses_without, alpha))
    mu0, sd0 = losses_without.mean(), losses_without.std(ddof=1)
    mu1, sd1 = losses_with.mean(), losses_with.std(ddof=1)
    t_gauss = float(mu0 + sd0 * norm.ppf(alpha))
    hits = int((losses_with < t_emp).sum())
    low, high = clopper_pearson(hits, len(losses_with))
    return PowerAtAlpha(
        alpha=alpha,
        threshold_empirical=t_emp,
        threshold_gaussian=t_gauss,
        power_empirical=hits / len(losses_with),
        power_ci_low=low,
        power_ci_high=high,
        power_gaussian=float(norm.cdf((t_gauss - mu1) / sd1)) if sd1 > 0 else float(mu1 < t_gauss),
        mean_with=float(mu1),
        std_with=float(sd1),
        mean_without=float(mu0),
        std_without=float(sd0),
    )


def error_rate(losses_with: np.ndarray, losses_without: np.ndarray, threshold: float) -> float:
    """Share of wrong calls on fresh pairs: a with-model called non-member or a without-model
    called member (member iff loss < threshold)."""
    wrong = (np.asarray(losses_with) >= threshold).sum() + (
        np.asarray(losses_without) < threshold
    ).sum()
    return float(wrong / (len(losses_with) + len(losses_without)))
