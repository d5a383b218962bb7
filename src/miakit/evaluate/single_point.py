"""Statistics of the with/without experiment for one record: thresholds, power, error rate.

A model trained *with* record x tends to give x a lower loss than one trained *without* it. At a
false-positive rate α, the attacker calls "member" when x's loss is below a threshold t:
- empirical: t = the α-quantile of the without-losses;
- Gaussian (Neyman–Pearson for a Gaussian null), on one of two scales (`gaussian_fit`):
  - `logit` (default): Gaussians fitted to φ = log p − log(1 − p) = −log(eˡ − 1) of each loss l,
    the logit-scaled confidence that LiRA (Carlini et al. 2022) shows is close to Gaussian; member
    iff φ > t_φ = μ₀ + σ₀·Φ⁻¹(1 − α), i.e. loss < t = softplus(−t_φ), which is never negative.
  - `loss`: the study's fit to the raw losses, t = μ₀ + σ₀·Φ⁻¹(α); losses are non-negative and
    skewed, so t can fall below 0 (power 0 whatever the data).
Power is the fraction of with-losses below the empirical t, with a Clopper–Pearson interval; the
Gaussian fit of the with side predicts it at the Gaussian t. mean_* and std_* are of the fitted
scale (φ or loss).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

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
    gaussian_fit: Literal["logit", "loss"] = "logit"

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)

    def gaussian_density(self, losses: np.ndarray, side: Literal["with", "without"]) -> np.ndarray:
        """The fitted Gaussian of one side as a density over losses [K] (change of variables
        from φ for the logit fit: |dφ/dl| = 1 / (1 − e⁻ˡ))."""
        mean, std = (
            (self.mean_with, self.std_with)
            if side == "with"
            else (self.mean_without, self.std_without)
        )
        losses = np.asarray(losses, dtype=np.float64)
        if self.gaussian_fit == "loss":
            return norm.pdf(losses, mean, std)
        with np.errstate(divide="ignore"):
            return norm.pdf(log_odds_of_loss(losses), mean, std) / -np.expm1(-losses)


def log_odds_of_loss(losses: np.ndarray) -> np.ndarray:
    """φ = log p − log(1 − p) of a loss l = −log p: −log(eˡ − 1) = −l − log(1 − e⁻ˡ), computed
    stably for small and large l (+inf at l = 0)."""
    losses = np.asarray(losses, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -losses - np.log(-np.expm1(-losses))


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval: conservative, and honest for the few rounds this experiment has."""
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = (
        1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    )
    return low, high


def power_at_alpha(
    losses_with: np.ndarray,
    losses_without: np.ndarray,
    alpha: float,
    gaussian_fit: Literal["logit", "loss"] = "logit",
) -> PowerAtAlpha:
    """Both thresholds and the power of the loss test at false-positive rate alpha; the Gaussian
    threshold fitted on φ (`logit`) or on the raw losses (`loss`), as the module docstring says.
    Raises MiakitError for alpha outside (0, 1), fewer than two rounds a side, or a logit fit with
    a loss of exactly 0 (φ infinite)."""
    losses_with = np.asarray(losses_with, dtype=np.float64)
    losses_without = np.asarray(losses_without, dtype=np.float64)
    if not 0 < alpha < 1:
        raise MiakitError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if len(losses_with) < 2 or len(losses_without) < 2:
        raise MiakitError("the with/without test needs at least two rounds of each")
    if gaussian_fit == "logit":
        if (losses_with <= 0).any() or (losses_without <= 0).any():
            raise MiakitError(
                "a loss of exactly 0 has infinite log-odds φ, so no Gaussian can be fitted to φ; "
                "use gaussian_fit: loss"
            )
        with_, without = log_odds_of_loss(losses_with), log_odds_of_loss(losses_without)
    else:
        with_, without = losses_with, losses_without
    t_emp = float(np.quantile(losses_without, alpha))
    mu0, sd0 = without.mean(), without.std(ddof=1)
    mu1, sd1 = with_.mean(), with_.std(ddof=1)
    if gaussian_fit == "logit":
        t_phi = mu0 + sd0 * norm.ppf(1 - alpha)  # member iff φ > t_φ
        t_gauss = float(np.logaddexp(0.0, -t_phi))  # the loss with φ = t_φ: softplus(−t_φ)
        power_gauss = float(norm.sf((t_phi - mu1) / sd1)) if sd1 > 0 else float(mu1 > t_phi)
    else:
        t_gauss = float(mu0 + sd0 * norm.ppf(alpha))  # member iff loss < t
        power_gauss = float(norm.cdf((t_gauss - mu1) / sd1)) if sd1 > 0 else float(mu1 < t_gauss)
    hits = int((losses_with < t_emp).sum())
    low, high = clopper_pearson(hits, len(losses_with))
    return PowerAtAlpha(
        alpha=alpha,
        threshold_empirical=t_emp,
        threshold_gaussian=t_gauss,
        power_empirical=hits / len(losses_with),
        power_ci_low=low,
        power_ci_high=high,
        power_gaussian=power_gauss,
        mean_with=float(mu1),
        std_with=float(sd1),
        mean_without=float(mu0),
        std_without=float(sd0),
        gaussian_fit=gaussian_fit,
    )


def error_rate(losses_with: np.ndarray, losses_without: np.ndarray, threshold: float) -> float:
    """Share of wrong calls on fresh pairs: a with-model called non-member or a without-model
    called member (member iff loss < threshold)."""
    wrong = (np.asarray(losses_with) >= threshold).sum() + (
        np.asarray(losses_without) < threshold
    ).sum()
    return float(wrong / (len(losses_with) + len(losses_without)))
