"""LiRA, the likelihood-ratio attack (Carlini et al., IEEE S&P 2022), in the reference code's variants.

Signal φ = log p_y − log(1 − p_y) per query augmentation. Per record and augmentation, the reference
models' φ are split into IN (trained on the record) and OUT; their centre and spread define
Gaussians, and the target's φ is scored against them, then averaged over augmentations:

- online:  log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out)
- offline: log Φ((φ − μ_out) / σ_out), the paper's one-sided test (default; see `offline_tail`)
- global:  φ itself, one threshold for all records (no reference models)

Differences from the reference code (`plot.py` of the LiRA release), each on purpose:
- Reference counts. The reference code keeps, of every record's IN φ, the first (in model order)
  as many as the record with the fewest IN references has, and so for OUT (`generate_ours`; its
  offline variant truncates OUT alone): every record and target is fitted on the same numbers,
  fixed over the whole pool. Its targets are never references; on the release's balanced split a
  target's shadows hold M/2 − 1 IN and M/2 OUT models of each of its members and the reverse of
  each non-member, so it fits M/2 − 1 of each side everywhere. Here (`reference_counts: equal`,
  the default; `engine`'s docstring) the count is per record and target: a target whose
  references on the record are X IN and Y OUT ones fits on the first min(X, Y) of each side in
  model order (offline too; offline for a target that is no reference: all Y). On the release's
  balanced split, leave-one-out, this is the reference's rule exactly, M/2 − 1 of each side;
  where the counts vary over records it keeps each record's own rather than the pool's smallest,
  from the target's references alone, so that the score never reads the target's membership.
  Truncating to the pool's smallest would keep what equal counts are for, but a single record
  with few references would cut every record's sample. `reference_counts: all` fits on every
  reference (the behaviour before equal counts): under leave-one-out a member then has one IN
  reference fewer and one OUT more than a non-member, and where the models carry no membership
  signal online LiRA's mean AUC is about 0.38 at M = 8 and offline's about 0.53.
- A record with fewer than two IN (or OUT) references has no usable spread of its own; it gets the
  global one instead of the reference's σ + 1e-30, which turns its score into ±huge values.
- Offline: the reference scores −log N(φ; μ_out, σ_out), a two-sided test that also flags records
  whose φ is unusually *low* (often misclassified non-members). The paper's test is one-sided
  (Λ = Pr[Z < φ], Z ~ N(μ_out, σ_out²)), which only ever calls higher-than-usual φ a member, so it
  is the default; `offline_tail: two-sided` reproduces the reference code.
- Fixed variance takes the reference's spreads: online the std of all IN φ values for both
  Gaussians (only a global scale, so rankings do not depend on it), offline the std of all OUT φ.
- The global spread (fixed variance, and the fallback above) is that of all the references' IN
  (or OUT) φ over every pool record and augmentation, under either `reference_counts`, where the
  reference code's is that of its truncated sets: one scale per target, which moves no record's
  rank within a target.
- Query-only records (out-of-distribution studies; see `Signals.queries`) have no IN reference, so
  online LiRA cannot score them as the paper does: their IN Gaussian is their OUT one shifted by
  the references' mean μ_in − μ_out over the scored pool records, with their mean σ_in.

Fitting (`LiraFit`, see `base`): per record, the references' IN and OUT φ (with equal counts, the
selections of `engine.reference_use`) are sorted and summed once (`engine.SideFit`), and
every target reads its Gaussians from them with its own φ (or the spare's) left out
(`Fitted.without`), so leave-one-out over all M targets costs about one pass over the logits; the
pool is scored in that pass. With fixed variance, σ (the global spread) is gathered in the same pass
and applied after it (`fixed_variance_part`, `fixed_variance_score`). Query-only records are scored
afterwards (`LiraFit.score_queries`) from the references' φ on them and what the pool pass kept;
every reference is OUT for them, so both `reference_counts` fit all references but the target.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field
from scipy.special import log_ndtr

from miakit.attacks import engine
from miakit.attacks.base import AttackConfig, Fit, FittedAttack, register
from miakit.attacks.engine import (
    REFERENCE_COUNTS_HELP,
    Fitted,
    Layout,
    LeftOut,
    ReferenceCounts,
    SideFit,
    global_spread,
    map_chunks,
    merge_served,
    merged_spread,
    read_signal,
    reference_use,
    require,
    spread_moments,
)
from miakit.signals import Signals, log_odds

_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


class LiraConfig(AttackConfig):
    center: Literal["median", "mean"] = Field(
        "median",
        description="centre of the IN and OUT Gaussians: the references' median φ "
        "(the reference code) or mean φ",
    )
    offline_tail: Literal["one-sided", "two-sided"] = Field(
        "one-sided",
        description="offline test: the paper's log Pr[Z < φ] (one-sided) or the "
        "reference code's −log N(φ; μ_out, σ_out) (two-sided)",
    )
    reference_counts: ReferenceCounts = Field("equal", description=REFERENCE_COUNTS_HELP)


def log_normal_pdf(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - _HALF_LOG_2PI


def online_score(phi, mu_in, sd_in, mu_out, sd_out) -> np.ndarray:
    """log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out), averaged over augmentations: [..., n]."""
    return (log_normal_pdf(phi, mu_in, sd_in) - log_normal_pdf(phi, mu_out, sd_out)).mean(axis=-1)


def offline_score(phi, mu_out, sd_out, tail: str) -> np.ndarray:
    """log Pr[Z < φ], Z ~ N(μ_out, σ_out²) (one-sided), or −log N(φ; μ_out, σ_out) (two-sided)."""
    if tail == "one-sided":
        return log_ndtr((phi - mu_out) / sd_out).mean(axis=-1)
    return -log_normal_pdf(phi, mu_out, sd_out).mean(axis=-1)


def fixed_variance_part(phi, mu_in, mu_out, mode: str, tail: str) -> np.ndarray:
    """What the fixed-variance scores need besides σ, the global spread known only once every
    record is read: online Σ_a((φ − μ_out)² − (φ − μ_in)²)/A and two-sided offline
    Σ_a(φ − μ_out)²/A, [..., n]; one-sided offline φ − μ_out, [..., n, A]."""
    if mode == "online":
        return (np.square(phi - mu_out) - np.square(phi - mu_in)).mean(axis=-1)
    if tail == "two-sided":
        return np.square(phi - mu_out).mean(axis=-1)
    return phi - mu_out


def fixed_variance_score(part: np.ndarray, sigma: float, mode: str, tail: str) -> np.ndarray:
    """One target's `online_score` / `offline_score` with σ_in = σ_out = σ from its
    `fixed_variance_part` ([n] or [n, A]): online part / 2σ², two-sided part / 2σ² + log σ +
    ½ log 2π, one-sided the mean over augmentations of log Φ(part / σ); [n]."""
    if mode == "offline" and tail == "one-sided":
        return log_ndtr(part / sigma).mean(axis=-1)
    scaled = part / (2 * sigma**2)
    if mode == "online":
        return scaled
    return scaled + np.log(sigma) + _HALF_LOG_2PI


class Lira(FittedAttack):
    """Base of the five registered variants, which differ only in `mode` and `fixed_variance`."""

    Config = LiraConfig
    mode: ClassVar[Literal["online", "offline", "global"]]
    fixed_variance: ClassVar[bool] = False

    def fit(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> LiraFit:
        return LiraFit(self, signals, Layout(signals, targets, references, records))


class LiraFit(Fit):
    """LiRA fitted on the pool: per record, each target's Gaussians from its references' φ (in
    the same pass as the pool's scores); kept for query-only records: the global spreads of all
    IN and OUT φ and, online, each target's mean gap μ_in − μ_out and mean σ_in over the scored
    pool records (a query has no IN reference: its IN Gaussian is its OUT one shifted by that gap,
    with that spread)."""

    def __init__(self, attack: Lira, signals: Signals, layout: Layout):
        self.attack, self.config, self.signals, self.layout = attack, attack.config, signals, layout
        self._spread: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        # per target: sums of μ_in − μ_out and of σ_in over the scored records, and their count
        self.pooled = np.zeros((3, layout.targets.size))
        self.scores = np.full((layout.targets.size, signals.num_records), np.nan)
        # fixed variance: σ, the global spread, is gathered in the scoring pass and applied after
        # it (`_fixed`: what the scores need besides σ), unless that would keep too much
        self._fixed: np.ndarray | None = None
        if attack.mode == "global":
            map_chunks(self._score_global, range(layout.targets.size))
            return
        if attack.fixed_variance:
            shape = (layout.targets.size, signals.num_records)
            if attack.mode == "offline" and self.config.offline_tail == "one-sided":
                shape += (signals.num_augmentations,)
            if 8 * np.prod(shape) <= engine.KEPT_BYTES:
                self._fixed = np.full(shape, np.nan)
            else:
                self.global_std("IN")  # a pass of its own, first
        chunks = list(signals.record_chunks(layout.rows.size))
        parts = map_chunks(self._score_pool, chunks)
        for pooled, _ in parts:
            self.pooled += pooled
        if self._fixed is not None:
            with self._lock:
                self._spread.update(merged_spread([moments for _, moments in parts], layout))
            sigma = self._spread["IN" if attack.mode == "online" else "OUT"]  # as the reference
            mode, tail = attack.mode, self.config.offline_tail
            for i, part in enumerate(self._fixed):  # one target at a time: no copy of `_fixed`
                with np.errstate(all="ignore"):  # unscored records' parts may be ±inf or NaN
                    score = fixed_variance_score(part, sigma[i], mode, tail)
                self.scores[i] = np.where(layout.scored, score, np.nan)
            self._fixed = None

    def global_std(self, side: str) -> np.ndarray:
        """[T]: the std of all the target's references' `side` φ (`engine.global_spread`)."""
        with self._lock:
            if not self._spread:
                self._spread.update(global_spread(self.signals, log_odds, self.layout))
        return self._spread[side]

    def _score_global(self, i: int) -> None:
        for chunk in self.signals.record_chunks(1):
            phi = read_signal(self.signals, log_odds, [self.layout.targets[i]], chunk)[0]
            self.scores[i, chunk] = np.where(self.layout.scored[chunk], phi.mean(axis=-1), np.nan)

    def _score_pool(self, chunk: slice) -> tuple[np.ndarray, np.ndarray | None]:
        """Fills scores[:, chunk] (`_fixed[:, chunk]` where σ comes after the pass); returns this
        chunk's part of `pooled` and, where σ comes after the pass, its `spread_moments`."""
        layout, mode, tail = self.layout, self.attack.mode, self.config.offline_tail
        part = np.zeros_like(self.pooled)
        phi = read_signal(self.signals, log_odds, layout.rows, chunk)
        keep = self.signals.keep[layout.rows, chunk]
        moments = None if self._fixed is None else spread_moments(phi, keep)
        scored = layout.scored[chunk]
        sides = ("OUT",) if mode == "offline" else ("IN", "OUT")
        fits = [
            SideFit(phi, selections)
            for selections in reference_use(keep, layout, sides, self.config.reference_counts)
        ]
        fit_in, fit_out = (None, *fits) if mode == "offline" else fits
        # unscored records' values may be ±inf, with equal counts on both sides at once
        with np.errstate(invalid="ignore"):
            for block in layout.blocks(phi.shape[1], phi.shape[2]):
                mine = phi[layout.target_rows[block]]
                where = (scored, chunk.start, block)
                mu_out, sd_out = self._gaussians(fit_out, "OUT", mine, *where)
                mu_in, sd_in = None, None
                if mode == "online":
                    mu_in, sd_in = self._gaussians(fit_in, "IN", mine, *where)
                    counted = scored[None, :, None]
                    part[0, block] = np.where(counted, mu_in - mu_out, 0.0).sum(axis=(1, 2))
                    part[2, block] = scored.sum() * phi.shape[2]
                if self._fixed is not None:
                    self._fixed[block, chunk] = fixed_variance_part(mine, mu_in, mu_out, mode, tail)
                    continue
                if mode == "offline":
                    scores = offline_score(mine, mu_out, sd_out, tail)
                else:
                    scores = online_score(mine, mu_in, sd_in, mu_out, sd_out)
                    part[1, block] = np.where(scored[None, :, None], sd_in, 0.0).sum(axis=(1, 2))
                self.scores[block, chunk] = np.where(scored, scores, np.nan)
        return part, moments

    def score_queries(self, logits: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
        """Every reference is OUT for a query record: its OUT Gaussian is its references' φ on
        it; offline scores against that alone, online adds the pool's mean IN Gaussian."""
        layout, mode = self.layout, self.attack.mode
        queries = Signals(
            list(logits), np.asarray(labels), np.zeros((len(logits), len(labels)), dtype=bool)
        )
        out = np.empty((layout.targets.size, queries.num_records))
        first = self.signals.num_records  # query k is record N + k of the extended signals
        for chunk in queries.record_chunks(layout.rows.size):
            phi = read_signal(queries, log_odds, layout.rows, chunk)
            if mode == "global":
                out[:, chunk] = phi[layout.target_rows].mean(axis=-1)
                continue
            fit_out = Fitted(phi, np.broadcast_to(layout.is_reference[:, None], phi.shape[:2]))
            everything = np.ones(phi.shape[1], dtype=bool)
            for block in layout.blocks(phi.shape[1], phi.shape[2]):
                mine = phi[layout.target_rows[block]]
                where = (everything, first + chunk.start, block)
                view = fit_out.without(layout.drop[block], mine)
                mu_out, sd_out = self._gaussian(view, None, "OUT", *where)
                if mode == "offline":
                    out[block, chunk] = offline_score(
                        mine, mu_out, sd_out, self.config.offline_tail
                    )
                    continue
                count = self.pooled[2, block]
                gap = (self.pooled[0, block] / np.maximum(count, 1))[:, None, None]
                if self.attack.fixed_variance:
                    sd_in = sd_out
                else:
                    mean_sd = self.pooled[1, block] / np.maximum(count, 1)
                    sd_in = np.where(count > 0, mean_sd, self.global_std("IN")[block])
                    sd_in = sd_in[:, None, None]
                out[block, chunk] = online_score(mine, mu_out + gap, sd_in, mu_out, sd_out)
        return out

    def _gaussians(self, fit: SideFit, side: str, mine: np.ndarray, scored, first: int, block):
        """Centre and spread [T, n, A] of one side's φ for each target of the block, each pair
        from the selection that serves it (`engine.SideFit`)."""
        views = fit.views(block, self.layout.drop[block], mine)
        return merge_served(
            [
                (serves, self._gaussian(view, serves, side, scored, first, block))
                for _, view, serves in views
            ]
        )

    def _gaussian(self, view: LeftOut, serves, side: str, scored, first: int, block) -> tuple:
        """Centre and spread [T, n, A] of one side's φ for each target of the block, from the
        view that serves the pairs `serves` [T, n] (None: all)."""
        need = f"LiRA needs at least one {side} reference model for every scored record"
        if self.config.reference_counts == "equal" and self.attack.mode == "online":
            need = (
                "online LiRA needs at least one IN reference and one OUT reference for every "
                "scored record (reference_counts equal: as many of each as the target has of its "
                "smaller side)"
            )
        count = view.count if serves is None else np.where(serves, view.count, 1)
        require(count, scored, first, self.layout.targets[block], need)
        mu = view.center(self.config.center)
        if self._fixed is not None:
            return mu, None  # σ comes after the pass
        if self.attack.fixed_variance:
            side = "IN" if self.attack.mode == "online" else "OUT"  # the reference code's choice
            return mu, np.broadcast_to(self.global_std(side)[block][:, None, None], mu.shape)
        sd = view.std()
        few = (view.count < 2)[..., None] | (sd <= 0)
        if few.any():
            sd = np.where(few, self.global_std(side)[block][:, None, None], sd)
        return mu, sd


@register
class LiraOnline(Lira):
    name = "lira-online"
    reference_needs = ("in", "out")
    mode = "online"


@register
class LiraOnlineFixed(Lira):
    name = "lira-online-fixed"
    reference_needs = ("in", "out")
    mode = "online"
    fixed_variance = True


@register
class LiraOffline(Lira):
    name = "lira-offline"
    reference_needs = ("out",)
    mode = "offline"


@register
class LiraOfflineFixed(Lira):
    name = "lira-offline-fixed"
    reference_needs = ("out",)
    mode = "offline"
    fixed_variance = True


@register
class LiraGlobal(Lira):
    name = "lira-global"
    mode = "global"
