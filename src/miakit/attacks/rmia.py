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
  finds by binary search how many z pass (a prefix, since LR falls as s(z)/p(z) grows). The per-pair
  majority vote then needs, per x, the number of z inside a majority of these prefixes; prefixes are
  held as bitsets over Z (stored every `_STEP` positions, the rest set bit by bit) and summed by a
  carry-save adder tree, on threads over blocks of x. The result equals the pairwise computation
  exactly. The vote does not factorise over augmentations (a z inside 10 of x's 18 prefixes is not
  told apart by per-augmentation counts), so the count stays O(N · A · Z / 64) word operations.
- All targets at once: the signal is computed once per model, and p(x) of each target (its
  references' trimmed mean with its own signal left out) comes from the signals sorted once per
  record (`engine.Fitted`); the counting above then runs per target.
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

from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from miakit.attacks.base import AllTargetsAttack, Setting, observed_setting, register
from miakit.attacks.engine import Fitted, Layout, map_chunks, read_signal, require
from miakit.attacks.population import PopulationConfig, population_indices
from miakit.errors import MiakitError
from miakit.signals import Signals, taylor_soft_margin, true_class_log_prob

_ONE = np.uint64(1)
#: Words of bitset per block of records while counting (256 KiB per array, to stay in cache).
_BLOCK_WORDS = 2**15
#: Positions between stored prefix bitsets: Z / _STEP bitsets of Z bits per augmentation.
_STEP = 32
#: Bytes of s(x) and p(x) kept for a block of targets between the fitting pass and the counting.
_RATIO_BYTES = 2 * 2**30  # 149 targets at N = 50,000, A = 18: two fitting passes for 256


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


def _prefix_bitsets(order: np.ndarray, words: int) -> np.ndarray:
    """Bitsets [Z // _STEP + 1, words] over Z of the first 0, _STEP, 2 · _STEP, … entries of
    `order` [Z]."""
    steps = order.size // _STEP + 1
    blocks = np.zeros((steps, words), dtype=np.uint64)
    position = np.arange(order.size) // _STEP
    np.bitwise_or.at(blocks, (position, order >> 6), _ONE << (order & 63).astype(np.uint64))
    prefixes = np.zeros((steps, words), dtype=np.uint64)
    np.bitwise_or.accumulate(blocks[:-1], axis=0, out=prefixes[1:])
    return prefixes


def _majority_counts(prefix: np.ndarray, orders: np.ndarray, need: int) -> np.ndarray:
    """Per x, the number of z inside at least `need` of its A prefixes.

    prefix: int [N, A], the length of x's passing prefix in each augmentation's order;
    orders: int [A, Z], population positions sorted by ratio, per augmentation.

    Per block of x, each augmentation's prefix is a bitset over Z (a stored checkpoint every 64
    positions, the rest set bit by bit); the A bitsets are summed per bit by a carry-save adder
    tree (about A full adders of five word operations each, instead of a ripple through every
    counter bit per augmentation), and the bits whose count reaches `need` are counted. Blocks of
    x run on `engine.THREADS` threads.
    """
    num_x, num_aug = prefix.shape
    words = (orders.shape[1] + 63) // 64
    checkpoints = [_prefix_bitsets(order, words) for order in orders]
    block = max(1, _BLOCK_WORDS // words)

    def count(rows: slice) -> np.ndarray:
        lengths = prefix[rows]
        adder = _CarrySaveAdder()
        for a in range(num_aug):
            full, rest = lengths[:, a] // _STEP, lengths[:, a] % _STEP
            members = checkpoints[a][full]
            row = np.repeat(np.arange(len(lengths)), rest)
            offset = np.arange(row.size) - np.repeat(np.cumsum(rest) - rest, rest)
            z = orders[a][np.repeat(full * _STEP, rest) + offset]
            flat = members.reshape(-1)
            np.bitwise_or.at(flat, row * words + (z >> 6), _ONE << (z & 63).astype(np.uint64))
            adder.add(members)
        return np.bitwise_count(adder.at_least(need)).sum(axis=1)

    blocks = [slice(s, min(s + block, num_x)) for s in range(0, num_x, block)]
    parts = map_chunks(count, blocks)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class _CarrySaveAdder:
    """Per-bit sums of bitsets: `add` one bitset (uint64 words) at a time, `at_least(k)` the bits
    whose sum is ≥ k. Pending bitsets are kept per weight 2^w, at most two each: a third one at a
    weight goes through a full adder (sum stays, carry moves up a weight)."""

    def __init__(self) -> None:
        self.pending: list[list[np.ndarray]] = []

    def add(self, bits: np.ndarray, weight: int = 0) -> None:
        while True:
            if weight == len(self.pending):
                self.pending.append([])
            slot = self.pending[weight]
            if len(slot) < 2:
                slot.append(bits)
                return
            a, b = slot.pop(), slot.pop()
            carry = a & b  # full adder of a, b, bits: a ^= b is a ^ b, then the sum
            a ^= b
            carry |= a & bits
            a ^= bits
            slot.append(a)
            bits, weight = carry, weight + 1

    def at_least(self, k: int) -> np.ndarray:
        """Bitset of the bits whose sum is ≥ k (k ≥ 1)."""
        digits = []  # the sum's binary digits, weight 0 up, after half adders
        weight = 0
        while weight < len(self.pending):  # a half adder's carry can add a weight
            slot = self.pending[weight]
            if len(slot) == 2:
                a, b = slot
                carry = a & b
                a ^= b
                slot[:] = [a]
                self.add(carry, weight + 1)
            digits.append(slot[0] if slot else None)
            weight += 1
        shape = next(d for d in digits if d is not None).shape
        above = np.zeros(shape, dtype=np.uint64)
        equal = ~np.zeros(shape, dtype=np.uint64)
        for bit in reversed(range(max(len(digits), k.bit_length()))):
            digit = digits[bit] if bit < len(digits) else None
            if (k >> bit) & 1:
                if digit is None:
                    return above
                equal &= digit
            elif digit is not None:
                above |= equal & digit
                equal &= ~digit
        return above | equal


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
    return _majority_counts(prefix, orders, need) / ratio_z.shape[0]


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
        out = np.full((layout.targets.size, signals.num_records), np.nan)
        per_target = 2 * 8 * signals.num_records * signals.num_augmentations
        size = max(1, _RATIO_BYTES // per_target)
        for first in range(0, layout.targets.size, size):
            block = np.arange(first, min(first + size, layout.targets.size))
            s, p = self._signal_and_mean(signals, layout, block)
            for i, index in enumerate(block):
                target = int(layout.targets[index])
                p_target = p[i]
                if self.offline:
                    a = self.config.offline_a
                    if a == "auto":
                        refs = list(layout.rows[chosen[index]])
                        a = self._tune_offline_a(signals, target, refs, layout.scored)
                    p_target = (1 + a) / 2 * p_target + (1 - a) / 2
                out[index] = self._relative(signals, target, s[i] / p_target, layout.scored)
        return out

    def _tune_offline_a(
        self, signals: Signals, target: int, reference: list[int], scored: np.ndarray
    ) -> float:
        """The a in {0, 0.1, …, 1} with the best AUC against a paired reference model."""
        paired = target ^ 1 if (target ^ 1) in reference else reference[0]
        others = [m for m in reference if m != paired]
        layout = Layout(signals, [paired], others, scored[: signals.num_fit])
        s, p_out = self._signal_and_mean(signals, layout, np.array([0]))
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

    def _signal_and_mean(
        self, signals: Signals, layout: Layout, block: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For the block of targets: s(x) [B, N, A], each target's signal, and p(x) [B, N, A],
        the trimmed mean of its references' signals (OUT ones when offline), with its own signal
        left out; NaN where a record has no usable reference (only allowed where not scored)."""
        shape = (block.size, signals.num_records, signals.num_augmentations)
        s, p = np.empty(shape), np.empty(shape)

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
            s[:, chunk] = mine
            p[:, chunk] = np.where((view.count > 0)[..., None], mean, np.nan)
            zero = ~(mean > 0) & (scored[None, :, None] & (view.count > 0)[..., None])
            if zero.any():
                record = chunk.start + int(np.argwhere(zero)[0][1])
                raise MiakitError(
                    f"RMIA's reference average p(x) is 0 at record {record} (every reference "
                    "signal underflows); use signal: taylor_soft_margin or a higher temperature"
                )

        map_chunks(fit_chunk, list(signals.record_chunks(layout.rows.size)))
        return s, p

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
