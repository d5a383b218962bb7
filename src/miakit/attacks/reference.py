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
- The spread of all OUT φ is over every pool record and augmentation of the references.
- Under leave-one-out a record's OUT references number one more for a target that trained on it
  than for one that did not; with `reference_counts: equal` (the default, as LiRA's; `engine`'s
  docstring) a target that is a reference uses the first min(X, Y) in model order of its Y OUT
  references, X its IN ones: on a balanced split M/2 − 1 for members and non-members alike, from
  its references alone. The reference code
  has one target and references that never train on its records, so the question does not arise
  there; `reference_counts: all` uses every OUT reference.

Attack-R fits once for all targets (`engine.Fitted`): per record, the references' OUT losses are
sorted with the two end points, and each target's interpolation points are those with its own loss
(or, with equal counts, the spare's, `engine.SideFit`) left out; the Gaussian's mean and spread come from sums less the target's term. Query-only records
are scored from the fit (`AttackRFit.score_queries`, see `base`) by the same formulas. Attack-P
fits nothing from the references; query-only records reach it through the bridge of `base`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field
from scipy.special import ndtr

from miakit.attacks.base import AllTargetsAttack, AttackConfig, Fit, FittedAttack, register
from miakit.attacks.engine import (
    REFERENCE_COUNTS_HELP,
    Layout,
    LeftOut,
    ReferenceCounts,
    SideFit,
    global_spread,
    map_chunks,
    merge_served,
    read_signal,
    reference_use,
    require,
)
from miakit.attacks.population import PopulationConfig, population_indices
from miakit.signals import Signals, cross_entropy, log_odds

#: End points the reference code adds to every record's OUT losses before interpolating.
LINEAR_ITP_ENDS = (0.0, 1000.0)


class AttackRConfig(AttackConfig):
    threshold: Literal["linear_itp", "logit_rescale", "min", "mean"] = Field(
        "linear_itp",
        description="α from the OUT losses: linear interpolation of their CDF, a Gaussian on "
        "their log-odds, or the larger ('min' threshold) or mean of both",
    )
    reference_counts: ReferenceCounts = Field("equal", description=REFERENCE_COUNTS_HELP)


def linear_itp_alpha(loss: np.ndarray, points: LeftOut, below: np.ndarray) -> np.ndarray:
    """np.interp(loss, sorted points, linspace(0, 1, K + 2)) per target, record and augmentation:
    loss [T, n, A], points: the OUT losses with the two end points, K + 2 per record; below
    [T, n, A]: how many of them are ≤ loss (≥ 1: the end point 0 is ≤ every loss)."""
    size = points.count[..., None]  # K + 2
    j = np.minimum(below, size - 1) - 1
    lo, hi = points.kth(j), points.kth(np.minimum(j + 1, size - 1))
    step = 1.0 / (size - 1)
    level_lo = j * step  # linspace's values, with its exact end point 1
    level_hi = np.where(j + 2 >= size, 1.0, (j + 1) * step)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = (level_hi - level_lo) / (hi - lo) * (loss - lo) + level_lo
    alpha = np.where(loss == lo, level_lo, alpha)
    return np.where(below >= size, 1.0, alpha)


def logit_rescale_alpha(phi: np.ndarray, out: LeftOut, spread: np.ndarray) -> np.ndarray:
    """Pr[N(μ, σ²) > φ] with μ, σ of the OUT references' log-odds; σ = `spread` [T] (all OUT φ)
    for records with fewer than two OUT references or none of their spread."""
    sigma = out.std()
    few = (out.count < 2)[..., None] | (sigma <= 0)
    sigma = np.where(few, spread[:, None, None], sigma)
    return ndtr(-(phi - out.mean()) / sigma)


@register
class AttackR(FittedAttack):
    """Attack-R: a per-record threshold from the reference models' OUT losses."""

    name = "attack-r"
    Config = AttackRConfig
    reference_needs = ("out",)

    def fit(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> AttackRFit:
        return AttackRFit(self.config, signals, Layout(signals, targets, references, records))


class AttackRFit(Fit):
    """Attack-R fitted on the pool (the pool scored in the same pass); kept for query-only
    records, whose references are all OUT: each target's spread of all OUT φ (`logit_rescale`)."""

    def __init__(self, config: AttackRConfig, signals: Signals, layout: Layout):
        kind = config.threshold
        self.kind, self.counts, self.layout = kind, config.reference_counts, layout
        self.first_query = signals.num_records
        self.spread = (
            global_spread(signals, log_odds, layout)["OUT"] if kind != "linear_itp" else None
        )
        self.scores = self._score(signals, layout.scored, 0, self.counts)

    def score_queries(self, logits: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
        none = np.zeros((len(logits), len(labels)), dtype=bool)
        queries = Signals(list(logits), np.asarray(labels), none)
        # every reference is OUT for a query record: all of them but the target, as LiRA's
        return self._score(queries, np.ones(len(labels), dtype=bool), self.first_query, "all")

    def _score(self, signals: Signals, scored: np.ndarray, first: int, counts: str) -> np.ndarray:
        """Scores [T, n] of the records of `signals` (NaN where not `scored`) fitted on
        `counts` (`reference_counts`); `first`: the number of the first record in error
        messages."""
        kind, layout, spread = self.kind, self.layout, self.spread
        out = np.full((layout.targets.size, signals.num_records), np.nan)

        def score_chunk(chunk: slice) -> None:
            keep = signals.keep[layout.rows, chunk]
            [selections] = reference_use(keep, layout, ("OUT",), counts)
            scored_here = scored[chunk]
            if kind != "logit_rescale":
                loss = read_signal(signals, cross_entropy, layout.rows, chunk)
                ends = np.broadcast_to(
                    np.array(LINEAR_ITP_ENDS)[:, None, None], (2, *loss.shape[1:])
                )
                ends_use = np.ones((2, keep.shape[1]), dtype=bool)
                values = np.concatenate([loss, ends])
                points = SideFit(
                    values, [replace(s, use=np.concatenate([s.use, ends_use])) for s in selections]
                )
                at_most = [f.at_most_own(values, layout.target_rows) for f, _ in points.parts]
            if kind != "linear_itp":
                phi = read_signal(signals, log_odds, layout.rows, chunk)
                fitted = SideFit(phi, selections)
            need = "Attack-R needs at least one OUT reference model for every scored record"
            for b in layout.blocks(chunk.stop - chunk.start, signals.num_augmentations):
                rows, drop = layout.target_rows[b], layout.drop[b]
                where = (scored_here, first + chunk.start, layout.targets[b], need)
                parts = []
                if kind != "logit_rescale":
                    served = []
                    for i, view, serves in points.views(b, drop, loss[rows]):
                        _require(view.count - 2, serves, *where)
                        # the target's own loss is among the values: less the removed one if ≤ it
                        removed = view.removed[..., None] & (view.values <= loss[rows])
                        below = at_most[i][b] - removed
                        served.append((serves, linear_itp_alpha(loss[rows], view, below)))
                    parts.append(merge_served(served))
                if kind != "linear_itp":
                    served = []
                    for _, view, serves in fitted.views(b, drop, phi[rows]):
                        _require(view.count, serves, *where)
                        served.append((serves, logit_rescale_alpha(phi[rows], view, spread[b])))
                    parts.append(merge_served(served))
                alpha = np.maximum(*parts) if kind == "min" else np.mean(parts, axis=0)
                out[b, chunk] = np.where(scored_here, -alpha.mean(axis=-1), np.nan)

        map_chunks(score_chunk, list(signals.record_chunks(layout.rows.size)))
        return out


def _require(count: np.ndarray, serves: np.ndarray | None, scored, first, targets, need) -> None:
    """`engine.require` on the pairs a view serves (None: all)."""
    require(count if serves is None else np.where(serves, count, 1), scored, first, targets, need)


@register
class AttackP(AllTargetsAttack):
    """Attack-P: the target's loss on x ranked among its losses on the population."""

    name = "attack-p"
    Config = PopulationConfig

    def score_targets(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> np.ndarray:
        layout = Layout(signals, targets, references, records)
        out = np.full((layout.targets.size, signals.num_records), np.nan)
        populations = [
            population_indices(signals, t, self.config.population, layout.scored)
            for t in layout.targets
        ]  # before any work: a bad population is an error at once

        def score_target(i: int) -> None:
            target, population = layout.targets[i], populations[i]
            loss = np.concatenate(
                [
                    read_signal(signals, cross_entropy, [target], c)[0]
                    for c in signals.record_chunks(1)
                ]
            )
            alpha = np.empty_like(loss)
            for a in range(loss.shape[1]):
                alpha[:, a] = np.searchsorted(np.sort(loss[population, a]), loss[:, a], side="left")
            # α = the share of z ∈ Z with a lower loss (x's own pair never counts)
            scores = -(alpha / population.size).mean(axis=-1)
            out[i] = np.where(layout.scored, scores, np.nan)

        map_chunks(score_target, range(layout.targets.size))
        return out
