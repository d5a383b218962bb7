"""RMIA, the relative membership inference attack (Zarifzadeh et al., ICML 2024), online and offline.

For a record x, a population record z and query augmentation a, with s the target's signal and p the
reference models' average signal, LR(x, z) = (s(x)/p(x)) / (s(z)/p(z)). The score of x is the fraction
of z in the population Z whose pair (x, z) passes LR > γ in a majority of the augmentations.

- Signal: the Taylor soft-margin softmax of the true class (T = 2, m = 0.6, order 4) or the softmax
  p_y at temperature T (`signal: softmax`).
- p(x): the `trim`-trimmed mean (20%, scipy's `trim_mean` rule) of the reference models' signals;
  online over all references, offline over the OUT references, then p(x) = (1+a)/2 · p_OUT(x) + (1−a)/2.
  `offline_a: auto` picks a in {0, 0.1, …, 1} by the AUC of attacking a paired reference model, as
  the authors' later code (`tune_offline_a`) does.
- Counting never forms the N × |Z| matrix: per augmentation the z ratios are sorted once and each x
  finds by binary search how many z pass (a prefix, since LR falls as s(z)/p(z) grows). The
  per-pair majority vote then needs, per x, the number of z inside a majority of these prefixes;
  `majority_vote` counts it exactly, looking only at the z that two rank bounds leave undecided.
  The vote does not factorise over augmentations (a z inside 10 of x's 18 prefixes is not told
  apart by per-augmentation counts). Targets are counted on `engine.THREADS` threads.
- All targets at once: the signal is computed once per model, and p(x) of each target (its
  references' trimmed mean with its own signal left out) comes from the signals sorted once per
  record (`engine.Fitted`); each target's ratios s(x)/p(x) are kept (2 GiB at most: one pass for
  256 targets of CIFAR-10) and the counting above runs per target.
- Query-only records (`base`: fit and score) reach RMIA through the bridge that appends them to the
  pool: keeping every target's population ratios between fit and scoring would cost T · |Z| · A
  floats (about 1 GB at 256 targets of CIFAR-10), so the pool pass runs again per query set; Z
  never holds a query record.

Defaults are the authors' CIFAR-10 configs (γ = 2, T = 2, m = 0.6, order 4, 20% trim) and a = 0.3.

Differences from the reference code (`research/2023_rmia/main.py`), each on purpose:
- The code truncates every record's IN and OUT references to the smallest count; here each record
  uses all its reference models (as `lira.py`).
- The code compares a population record with itself; so does miakit (see `population.py`): a score
  never depends on the membership of the record it scores.
- Taylor polynomial: the code's `get_taylor(x, n)` stops at x^(n−1), which for n = 4 is a cubic that
  turns negative for x below about −1.6 (logits below about −3.2 at T = 2). Here `taylor_order` is the
  highest power, as in the Taylor-softmax papers; `taylor_order: 3` gives the code's polynomial, and
  RMIA stops with an error where a signal is negative instead of ranking ratios of mixed sign.
- Ties at even A: the code's `torch.mode` picks the smaller value, so a tied vote fails; same here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from miakit.attacks import engine
from miakit.attacks.base import AllTargetsAttack, Setting, observed_setting, register
from miakit.attacks.engine import Fitted, Layout, map_chunks, read_signal, require
from miakit.attacks.population import PopulationConfig, population_indices
from miakit.errors import MiakitError
from miakit.signals import Signals, taylor_soft_margin, true_class_log_prob


class RmiaConfig(PopulationConfig):
    gamma: float = Field(
        2.0,
        gt=0,
        description="γ: a pair (x, z) passes when LR(x, z) = (s(x)/p(x)) / (s(z)/p(z)) > γ",
    )
    signal: Literal["taylor_soft_margin", "softmax"] = Field(
        "taylor_soft_margin",
        description="s: the Taylor soft-margin softmax of the true class, or its softmax at "
        "`temperature`",
    )
    temperature: float = Field(2.0, gt=0, description="T dividing the logits of either signal")
    margin: float = Field(
        0.6, description="m subtracted from the true class's scaled logit (Taylor)"
    )
    taylor_order: int = Field(
        4, ge=1, description="highest power of the Taylor polynomial (3: the RMIA code's cubic)"
    )
    trim: float = Field(
        0.2, ge=0, lt=0.5, description="share trimmed at each end for p(x), the references' mean"
    )


class RmiaOfflineConfig(RmiaConfig):
    offline_a: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = Field(
        0.3,
        description="a in p(x) = (1+a)/2 · p_OUT(x) + (1−a)/2; 0.3 is the paper's CIFAR-10 value, "
        "'auto' picks the best of 0, 0.1, …, 1 on a paired reference model",
    )


def _passing_prefix(sorted_z: np.ndarray, ratio_x: np.ndarray, gamma: float) -> np.ndarray:
    """For each x, how many sorted z ratios pass ratio_x / z > γ: exact, ties moving together.

    The test is non-increasing in z ≥ 0 under IEEE division, so the passing z form a prefix; the
    binary search on ratio_x / γ lands within rounding of its end, and the loop moves across whole
    tie groups until the exact test agrees on both sides.
    """
    size = sorted_z.size
    count = np.searchsorted(sorted_z, ratio_x / gamma, side="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        while True:
            right = count < size
            grow = right.copy()
            grow[right] = ratio_x[right] / sorted_z[count[right]] > gamma
            left = count > 0
            shrink = left.copy()
            shrink[left] = ~(ratio_x[left] / sorted_z[count[left] - 1] > gamma)
            if not (grow.any() or shrink.any()):
                return count
            count[grow] = np.searchsorted(sorted_z, sorted_z[count[grow]], side="right")
            count[shrink] = np.searchsorted(sorted_z, sorted_z[count[shrink] - 1], side="left")


def relative_scores(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """RMIA scores [n] from ratios s/p of the scored records [n, A] and of the population [Z, A]
    (all ≥ 0): the fraction of z ∈ Z whose pair with x has LR = ratio_x / ratio_z > γ in more than
    half of the A augmentations. A record in Z meets itself like any other z."""
    need = ratio_x.shape[1] // 2 + 1
    orders = np.argsort(ratio_z, axis=0, kind="stable").T
    prefix = np.stack(
        [
            _passing_prefix(ratio_z[order, a], ratio_x[:, a], gamma)
            for a, order in enumerate(orders)
        ],
        axis=1,
    )
    from miakit.attacks.majority_vote import majority_counts  # numba: compiled on first use

    return majority_counts(prefix, orders, need) / ratio_z.shape[0]


def _auc(scores: np.ndarray, members: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum statistic (ties count one half)."""
    from scipy.stats import rankdata  # imported here: scipy.stats takes about 1.5 s to import

    ranks = rankdata(scores)
    positives = int(members.sum())
    negatives = members.size - positives
    return (ranks[members].sum() - positives * (positives + 1) / 2) / (positives * negatives)


class Rmia(AllTargetsAttack):
    """Online (`rmia`) and offline (`rmia-offline`) RMIA; they differ in which references form p(x)."""

    Config = RmiaConfig
    offline: ClassVar[bool] = False
    reference_needs = ("any",)

    def unavailable(self, signals: Signals) -> str | None:
        """The Taylor soft-margin reads logits, and it changes when they shift by a constant: an
        API that returns probabilities (query.output) fixes them only up to that constant."""
        if self.config.signal == "taylor_soft_margin" and signals.output != "logits":
            return (
                f"{self.name}'s Taylor soft-margin signal reads the logits themselves, which "
                f"query.output={signals.output} does not return; use attack_options.{self.name}."
                "signal=softmax"
            )
        return super().unavailable(signals)

    def score_targets(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> np.ndarray:
        """Raises MiakitError where the options do not fit a target's references (`check`), before
        any work, and where a signal or a reference average is unusable."""
        layout = Layout(signals, targets, references, records)
        chosen = layout.references_of(np.arange(layout.targets.size))
        for index, target in enumerate(layout.targets):  # before any work
            self.check(observed_setting(signals, int(target), layout.rows[chosen[index]]))
        # p(x) = scale · p_refs(x) + shift: online p_refs itself, offline (1+a)/2 · p_OUT + (1−a)/2
        scale, shift = np.ones(layout.targets.size), np.zeros(layout.targets.size)
        if self.offline:
            for index, target in enumerate(layout.targets):
                a = self.config.offline_a
                if a == "auto":
                    refs = list(layout.rows[chosen[index]])
                    a = self._tune_offline_a(signals, int(target), refs, layout.scored)
                scale[index], shift[index] = (1 + a) / 2, (1 - a) / 2
        out = np.full((layout.targets.size, signals.num_records), np.nan)
        per_target = 8 * signals.num_records * signals.num_augmentations
        size = max(1, engine.KEPT_BYTES // per_target)
        for first in range(0, layout.targets.size, size):
            block = np.arange(first, min(first + size, layout.targets.size))
            ratio = np.empty((block.size, signals.num_records, signals.num_augmentations))

            def keep_ratio(chunk: slice, s: np.ndarray, p: np.ndarray, block=block, ratio=ratio):
                ratio[:, chunk] = s / (scale[block, None, None] * p + shift[block, None, None])

            self._fit(signals, layout, block, keep_ratio)

            def count(i: int, block=block, ratio=ratio) -> None:
                target = int(layout.targets[block[i]])
                out[block[i]] = self._relative(signals, target, ratio[i], layout.scored)

            map_chunks(count, range(block.size))
        return out

    def _tune_offline_a(
        self, signals: Signals, target: int, reference: list[int], scored: np.ndarray
    ) -> float:
        """The a in {0, 0.1, …, 1} with the best AUC against a paired reference model."""
        paired = target ^ 1 if (target ^ 1) in reference else reference[0]
        others = [m for m in reference if m != paired]
        layout = Layout(signals, [paired], others, scored[: signals.num_fit])
        shape = (1, signals.num_records, signals.num_augmentations)
        s, p_out = np.empty(shape), np.empty(shape)

        def keep_both(chunk: slice, signal: np.ndarray, mean: np.ndarray) -> None:
            s[:, chunk], p_out[:, chunk] = signal, mean

        self._fit(signals, layout, np.array([0]), keep_both)
        fit = np.flatnonzero(layout.scored[: signals.num_fit])
        best_a, best_auc = 0.0, -1.0
        for a in np.round(np.arange(0.0, 1.01, 0.1), 1):
            ratio = s[0] / ((1 + a) / 2 * p_out[0] + (1 - a) / 2)
            scores = self._relative(signals, paired, ratio, layout.scored)
            auc = _auc(scores[fit], signals.keep[paired, fit])
            if auc > best_auc:
                best_a, best_auc = float(a), auc
        return best_a

    def _relative(
        self, signals: Signals, target: int, ratio: np.ndarray, scored: np.ndarray
    ) -> np.ndarray:
        """Scores [N] (NaN where not scored) from the target's ratios s/p [N, A]."""
        cfg = self.config
        population = population_indices(signals, target, cfg.population, scored)
        if np.isnan(ratio[population]).any():
            record = int(population[np.isnan(ratio[population]).any(axis=1)][0])
            raise MiakitError(
                f"population record {record} has no usable reference model for target model "
                f"{target}, so its p(z) is unknown; choose a population of scored records"
            )
        out = np.full(signals.num_records, np.nan)
        out[scored] = relative_scores(ratio[scored], ratio[population], cfg.gamma)
        return out

    def _fit(
        self,
        signals: Signals,
        layout: Layout,
        block: np.ndarray,
        keep: Callable[[slice, np.ndarray, np.ndarray], None],
    ) -> None:
        """One pass over the references' signals for the block of targets: per record chunk,
        keep(chunk, s, p) with s(x) [B, n, A], each target's signal, and p(x) [B, n, A], the
        trimmed mean of its references' signals (OUT ones when offline) with its own signal left
        out; NaN where a record has no usable reference (only allowed where not scored)."""

        def fit_chunk(chunk: slice) -> None:
            values = read_signal(signals, self._signal, layout.rows, chunk)
            if not (values >= 0).all():
                row, record, _ = np.argwhere(~(values >= 0))[0]
                raise MiakitError(
                    f"RMIA's signal must not be negative, but model {layout.rows[row]} gives "
                    f"{values[row, record].min():.3g} at record {chunk.start + record}; use an "
                    "even taylor_order (odd Taylor polynomials turn negative) or signal: softmax"
                )
            use = np.broadcast_to(layout.is_reference[:, None], values.shape[:2])
            if self.offline:
                use = use & ~signals.keep[layout.rows, chunk]
            mine = values[layout.target_rows[block]]
            view = Fitted(values, use).without(layout.drop[block], mine)
            scored = layout.scored[chunk]
            need = (
                "RMIA needs at least one usable reference model for every scored record "
                "(offline RMIA uses OUT references)"
            )
            require(view.count, scored, chunk.start, layout.targets[block], need)
            mean = view.trimmed_mean(self.config.trim)
            keep(chunk, mine, np.where((view.count > 0)[..., None], mean, np.nan))
            zero = ~(mean > 0) & (scored[None, :, None] & (view.count > 0)[..., None])
            if zero.any():
                record = chunk.start + int(np.argwhere(zero)[0][1])
                raise MiakitError(
                    f"RMIA's reference average p(x) is 0 at record {record} (every reference "
                    "signal underflows); use signal: taylor_soft_margin or a higher temperature"
                )

        map_chunks(fit_chunk, list(signals.record_chunks(layout.rows.size)))

    def _signal(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.signal == "softmax":
            return np.exp(true_class_log_prob(logits / cfg.temperature, labels))
        return taylor_soft_margin(logits, labels, cfg.temperature, cfg.margin, cfg.taylor_order)


@register
class RmiaOnline(Rmia):
    name = "rmia"


@register
class RmiaOffline(Rmia):
    name = "rmia-offline"
    Config = RmiaOfflineConfig
    offline = True
    reference_needs = ("out",)

    def check(self, setting: Setting) -> None:
        """MiakitError where `offline_a: auto` has fewer than two reference models."""
        if self.config.offline_a == "auto" and setting.num_references < 2:
            raise MiakitError(
                "attack_options.rmia-offline.offline_a: auto attacks a paired reference model "
                "with the other references, so it needs at least two reference models, but there "
                f"are {setting.num_references}; set offline_a to a number or use more models"
            )
