"""Attack-R and Attack-P (Ye et al., "Enhanced membership inference attacks", CCS 2022).

Both compare the target's loss on x with a distribution and report α, the level at which the target's
loss sits in it; a low α (the loss is unusually low) means member, so the score is −α averaged over
query augmentations (the reference code uses one query).

- `attack-r`: per record, the losses of the reference models that did not train on x.
  - `linear_itp`: α = the piecewise-linear CDF through the sorted OUT losses with the reference
    code's end points 0 and 1000 added (`np.interp(loss, sorted, linspace(0, 1, K + 2))`).
  - `logit_rescale`: a Gaussian fitted to the OUT log-odds φ = log p_y − log(1 − p_y); α = Pr[N > φ].
  - `min` / `mean`: the smaller threshold (the larger α) or the mean of both α, as the code combines.
- `attack-p`: α = the fraction of population records Z whose target loss is lower than x's.

Differences from the reference code (`research/2022_enhanced_mia/plot_attack_via_reference_or_distill.py`):
- The code's references never trained on the audited records; here each record uses its OUT
  references from the shared pool, so every model can be a target (leave-one-out).
- A record with fewer than two OUT references, or OUT φ of zero spread, gets the spread of all OUT
  φ instead of the code's σ + 1e-30, which turns α into 0 or 1 (as `lira.py` does).
- α of the Gaussian is computed as Φ(−z), not 1 − Φ(z), so it keeps its precision in the member tail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.special import ndtr

from miakit.attacks.base import Attack, AttackConfig, register
from miakit.attacks.population import PopulationConfig, population_indices, self_pair_mask
from miakit.errors import MiakitError
from miakit.signals import Signals, cross_entropy, log_odds

#: End points the reference code adds to every record's OUT losses before interpolating.
LINEAR_ITP_ENDS = (0.0, 1000.0)


class AttackRConfig(AttackConfig):
    threshold: Literal["linear_itp", "logit_rescale", "min", "mean"] = "linear_itp"


def linear_itp_alpha(loss: np.ndarray, ref_loss: np.ndarray, use: np.ndarray) -> np.ndarray:
    """np.interp(loss, sorted(OUT losses + end points), linspace(0, 1, K + 2)) per record.

    loss [n, A], ref_loss [R, n, A], use [R, n] (OUT references) → α [n, A].
    """
    ends = np.broadcast_to(np.array(LINEAR_ITP_ENDS)[:, None, None], (2, *loss.shape))
    points = np.concatenate([np.where(use[..., None], ref_loss, np.inf), ends]).transpose(1, 2, 0)
    points = np.sort(points, axis=-1)
    size = use.sum(axis=0)[:, None] + 2  # K + 2 finite points per record
    step = 1.0 / (size - 1)
    below = (points <= loss[..., None]).sum(axis=-1)  # ≥ 1: the end point 0 is ≤ every loss
    j = np.minimum(below, size - 1) - 1
    lo = np.take_along_axis(points, j[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(points, np.minimum(j + 1, points.shape[-1] - 1)[..., None], axis=-1)
    level_lo = j * step  # linspace's values, with its exact end point 1
    level_hi = np.where(j + 2 >= size, 1.0, (j + 1) * step)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = (level_hi - level_lo) / (hi[..., 0] - lo) * (loss - lo) + level_lo
    alpha = np.where(loss == lo, level_lo, alpha)
    return np.where(below >= size, 1.0, alpha)


def logit_rescale_alpha(phi: np.ndarray, ref_phi: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Pr[N(μ, σ²) > φ] with μ, σ of the OUT references' log-odds, per record and augmentation."""
    counts = use.sum(axis=0)[:, None]
    values = np.where(use[..., None], ref_phi, 0.0)
    mu = values.sum(axis=0) / counts
    sigma = np.sqrt(np.where(use[..., None], (ref_phi - mu) ** 2, 0.0).sum(axis=0) / counts)
    few = (counts < 2) | (sigma <= 0)
    if few.any():
        pooled = ref_phi[use].std() if use.sum() > 1 else 0.0
        sigma = np.where(few, pooled if pooled > 0 else 1.0, sigma)
    return ndtr(-(phi - mu) / sigma)


@register
class AttackR(Attack):
    """Attack-R: a per-record threshold from the reference models' OUT losses."""

    name = "attack-r"
    Config = AttackRConfig

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        out = np.empty(signals.num_records)
        for records in signals.record_chunks(len(reference) + 1):
            logits = signals.read_logits([target, *reference], records)
            labels = signals.labels[records]
            use = ~signals.keep[list(reference), records]
            if not use.any(axis=0).all():
                record = (records.start or 0) + int(np.flatnonzero(~use.any(axis=0))[0])
                raise MiakitError(
                    f"Attack-R needs at least one OUT reference model per record, but record "
                    f"{record} has none; use more models or a balanced split"
                )
            out[records] = -self._alpha(logits, labels, use).mean(axis=-1)
        return out

    def _alpha(self, logits: np.ndarray, labels: np.ndarray, use: np.ndarray) -> np.ndarray:
        kind = self.config.threshold
        alphas = []
        if kind != "logit_rescale":
            loss = cross_entropy(logits, labels)
            alphas.append(linear_itp_alpha(loss[0], loss[1:], use))
        if kind != "linear_itp":
            phi = log_odds(logits, labels)
            alphas.append(logit_rescale_alpha(phi[0], phi[1:], use))
        if kind == "min":
            return np.maximum(*alphas)
        return np.mean(alphas, axis=0)


@register
class AttackP(Attack):
    """Attack-P: the target's loss on x ranked among its losses on the population."""

    name = "attack-p"
    Config = PopulationConfig
    uses_reference = False

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        population = population_indices(signals, target, self.config.population)
        loss = signals.signal("loss", [target])[0]
        dropped = self_pair_mask(signals.num_records, population, self.config.include_self_pair)
        alpha = np.empty_like(loss)
        for a in range(loss.shape[1]):
            sorted_loss = np.sort(loss[population, a])
            alpha[:, a] = np.searchsorted(sorted_loss, loss[:, a], side="left")
        # a record never has a lower loss than itself, so dropping its self pair only shrinks Z
        return -(alpha / (population.size - dropped)[:, None]).mean(axis=-1)
