"""LiRA, the likelihood-ratio attack (Carlini et al., IEEE S&P 2022), in the reference code's variants.

Signal φ = log p_y − log(1 − p_y) per query augmentation. Per record and augmentation, the reference
models' φ are split into IN (trained on the record) and OUT; their centre and spread define
Gaussians, and the target's φ is scored against them, then averaged over augmentations:

- online:  log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out)
- offline: log Φ((φ − μ_out) / σ_out), the paper's one-sided test (default; see `offline_tail`)
- global:  φ itself, one threshold for all records (no reference models)

Differences from the reference code (`plot.py` of the LiRA release), each on purpose:
- The reference truncates every record's IN and OUT sets to the smallest count over records; here
  each record uses all of its reference models.
- A record with fewer than two IN (or OUT) references has no usable spread of its own; it gets the
  global one instead of the reference's σ + 1e-30, which turns its score into ±huge values.
- Offline: the reference scores −log N(φ; μ_out, σ_out), a two-sided test that also flags records
  whose φ is unusually *low* (often misclassified non-members). The paper's test is one-sided
  (Λ = Pr[Z < φ], Z ~ N(μ_out, σ_out²)), which only ever calls higher-than-usual φ a member, so it
  is the default; `offline_tail: two-sided` reproduces the reference code.
- Fixed variance follows the reference exactly: online uses the std of all IN φ values for both
  Gaussians (only a global scale, so rankings do not depend on it), offline the std of all OUT φ.
- Query-only records (out-of-distribution studies; see `Signals.queries`) have no IN reference, so
  online LiRA cannot score them as the paper does: their IN Gaussian is their OUT one shifted by
  the references' mean μ_in − μ_out over the pool, with the pool's mean σ_in (`_Pooled`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from scipy.special import log_ndtr

from miakit.attacks.base import Attack, AttackConfig, register
from miakit.errors import MiakitError
from miakit.signals import Signals

_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


class LiraConfig(AttackConfig):
    center: Literal["median", "mean"] = "median"
    offline_tail: Literal["one-sided", "two-sided"] = "one-sided"


def _log_normal_pdf(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - _HALF_LOG_2PI


def _side_stats(
    phi: np.ndarray, member: np.ndarray, center: str, fixed: float | None, side: str
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and std [n, A] of φ [R, n, A] over the references where `member` [R, n] is True."""
    counts = member.sum(axis=0)
    if (counts == 0).any():
        record = int(np.flatnonzero(counts == 0)[0])
        raise MiakitError(
            f"LiRA needs at least one {side} reference model for every record, but record "
            f"{record} (of this chunk) has none; use more models or a balanced split"
        )
    masked = np.where(member[..., None], phi, np.nan)
    mu = np.nanmedian(masked, axis=0) if center == "median" else np.nanmean(masked, axis=0)
    if fixed is not None:
        return mu, np.full_like(mu, fixed)
    sigma = np.nanstd(masked, axis=0) if (counts >= 2).any() else np.zeros_like(mu)
    few = (counts < 2)[:, None] | (sigma <= 0)
    if few.any():
        sigma = np.where(few, _global_std(phi, member), sigma)
    return mu, sigma


def _global_std(phi: np.ndarray, member: np.ndarray) -> float:
    values = phi[member]
    std = float(values.std()) if values.size > 1 else 0.0
    return std if std > 0 else 1.0


@dataclass(frozen=True)
class _Pooled:
    """What the references show over all records an attack may learn from, for query-only records
    (out-of-distribution studies), which have no IN reference: their IN Gaussian is their OUT one
    shifted by the mean μ_in − μ_out, with the mean σ_in; fixed variance uses the global stds."""

    shift: float
    sd_in: float
    std_in: float
    std_out: float


class _Moments:
    def __init__(self) -> None:
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, values: np.ndarray) -> None:
        self.count += values.size
        self.total += float(values.sum())
        self.squares += float((values**2).sum())

    def mean(self) -> float:
        return self.total / self.count

    def std(self) -> float:
        variance = max(self.squares / self.count - self.mean() ** 2, 0.0)
        return float(np.sqrt(variance)) or 1.0


class Lira(Attack):
    """Base of the five registered variants, which differ only in `mode` and `fixed_variance`."""

    Config = LiraConfig
    mode: ClassVar[Literal["online", "offline", "global"]]
    fixed_variance: ClassVar[bool] = False

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        reference = list(reference)
        pooled = None
        if signals.queries and self.mode != "global":
            pooled = self._pooled(signals, target, reference)
        out = np.empty(signals.num_records)
        for records in signals.record_chunks(len(reference) + 1):
            phi = signals.signal("log_odds", [target, *reference], records)
            query = (records.start or 0) >= signals.num_fit
            out[records] = self._score_chunk(
                phi[0], phi[1:], signals.keep[reference, records], pooled if query else None
            )
        return out

    def score_leave_one_out(self, signals: Signals, targets: Sequence[int]) -> np.ndarray:
        """Reads each chunk of φ once for all models, then scores every target from it (with
        query-only records, target by target: their pooled statistics are per target)."""
        if signals.queries:
            return super().score_leave_one_out(signals, targets)
        out = np.empty((len(targets), signals.num_records))
        models = np.arange(signals.num_models)
        for records in signals.record_chunks():
            phi = signals.signal("log_odds", list(models), records)
            keep = signals.keep[:, records]
            for i, t in enumerate(targets):
                ref = models != t
                out[i, records] = self._score_chunk(phi[t], phi[ref], keep[ref])
        return out

    def _pooled(self, signals: Signals, target: int, reference: list[int]) -> _Pooled:
        """A pass over the records an attack may learn from (not the query-only ones)."""
        center = self.config.center
        shift, sd_in, values_in, values_out = _Moments(), _Moments(), _Moments(), _Moments()
        for records in signals.record_chunks(len(reference) + 1):
            if (records.start or 0) >= signals.num_fit:
                break
            phi = signals.signal("log_odds", reference, records)
            keep = signals.keep[reference, records]
            values_in.add(phi[keep])
            values_out.add(phi[~keep])
            if self.mode == "online" and not self.fixed_variance:
                mu_in, sigma_in = _side_stats(phi, keep, center, None, "IN")
                mu_out, _ = _side_stats(phi, ~keep, center, None, "OUT")
                shift.add(mu_in - mu_out)
                sd_in.add(sigma_in)
            elif self.mode == "online":
                mu_in, _ = _side_stats(phi, keep, center, 1.0, "IN")
                mu_out, _ = _side_stats(phi, ~keep, center, 1.0, "OUT")
                shift.add(mu_in - mu_out)
        return _Pooled(
            shift=shift.mean() if shift.count else 0.0,
            sd_in=sd_in.mean() if sd_in.count else values_in.std(),
            std_in=values_in.std(),
            std_out=values_out.std(),
        )

    def _score_chunk(
        self,
        phi_t: np.ndarray,
        phi_ref: np.ndarray,
        keep_ref: np.ndarray,
        pooled: _Pooled | None = None,
    ) -> np.ndarray:
        """φ of the target [n, A], of the references [R, n, A], their keep rows [R, n] → [n];
        `pooled` for a chunk of query-only records."""
        cfg = self.config
        if self.mode == "global":
            return phi_t.mean(axis=-1)
        if self.mode == "online":
            if pooled is not None:
                fixed = pooled.std_in if self.fixed_variance else None
                mu_out, sd_out = _side_stats(phi_ref, ~keep_ref, cfg.center, fixed, "OUT")
                mu_in = mu_out + pooled.shift
                sd_in = sd_out if self.fixed_variance else np.full_like(mu_out, pooled.sd_in)
            else:
                fixed = _global_std(phi_ref, keep_ref) if self.fixed_variance else None
                mu_in, sd_in = _side_stats(phi_ref, keep_ref, cfg.center, fixed, "IN")
                mu_out, sd_out = _side_stats(phi_ref, ~keep_ref, cfg.center, fixed, "OUT")
            llr = _log_normal_pdf(phi_t, mu_in, sd_in) - _log_normal_pdf(phi_t, mu_out, sd_out)
            return llr.mean(axis=-1)
        fixed = None
        if self.fixed_variance:
            fixed = pooled.std_out if pooled is not None else _global_std(phi_ref, ~keep_ref)
        mu_out, sd_out = _side_stats(phi_ref, ~keep_ref, cfg.center, fixed, "OUT")
        if cfg.offline_tail == "one-sided":
            return log_ndtr((phi_t - mu_out) / sd_out).mean(axis=-1)
        return -_log_normal_pdf(phi_t, mu_out, sd_out).mean(axis=-1)


@register
class LiraOnline(Lira):
    name = "lira-online"
    mode = "online"


@register
class LiraOnlineFixed(Lira):
    name = "lira-online-fixed"
    mode = "online"
    fixed_variance = True


@register
class LiraOffline(Lira):
    name = "lira-offline"
    mode = "offline"


@register
class LiraOfflineFixed(Lira):
    name = "lira-offline-fixed"
    mode = "offline"
    fixed_variance = True


@register
class LiraGlobal(Lira):
    name = "lira-global"
    mode = "global"
    uses_reference = False
