"""Per-record statistics of the reference models, fitted once and read for every target.

An attack that compares a target with its reference models needs, per record and augmentation,
statistics (median, mean, std, trimmed mean, order statistics) of the references' values. In
leave-one-out evaluation every model is a target in turn and its references are all the others, so
the statistics of M − 1 values are wanted M times. `Fitted` computes them once over all the rows it
is given (values sorted along the models, sums of deviations) and `Fitted.without` derives each
target's by removing that target's own value:

- the k-th smallest of the other values is the k-th or the (k+1)-th of all, depending only on
  whether the removed value sorts before it: with r the number of values below the removed one,
  r ≤ k exactly when sorted[k] ≥ removed value, so no ranks (argsort) are needed and ties take
  care of themselves;
- sums of deviations from a shift (the lower median of all values, one of the values itself) lose
  the removed term; the mean and the variance follow. A spread of identical values comes out as
  exactly 0, so "no spread" can be told from a small one.

Shapes: values [R, n, A] (R rows, usually models; n records; A augmentations), use [R, n] (which
rows count for a record). Targets come as a block of T rows to leave out (−1: none) with their own
values [T, n, A].

Equal reference counts (`reference_counts: equal`, `reference_use`). Under leave-one-out a record
IN for c_in of the reference models and OUT for c_out gives a target that trained on it c_in − 1
IN and c_out OUT references, and one that did not c_in IN and c_out − 1 OUT: the sizes of the
samples its statistics come from depend on the very membership an attack infers, and with few
models that alone moves the scores (online LiRA's mean AUC without any membership signal is about
0.38 at M = 8). With `equal`, a target whose references on a record are X IN and Y OUT ones fits,
on each side an attack reads, the first k = min(X, Y) of them in model order (an attack reading
OUT alone, whose target is not a reference, all Y: no membership of its own moves its counts).

Why this does not read the target's membership: k and the rows come from the target's references
alone, so two records whose references' keep columns and values agree get the same score whether
the target trained on them or not (tests/test_attack_membership_blind.py). On the balanced split
(every record IN for half the models) a member has X = M/2 − 1, Y = M/2 and a non-member the
reverse, so both fit k = M/2 − 1 per side, the reference code's truncation; with signals
exchangeable over models, a target's score on a record then has one distribution whether it is
a member or not, and its mean AUC over records is 0.5 (tests/test_attack_no_signal.py, also on
keep matrices whose counts vary over records).

How it stays one pass: per record and side s (c_s of the references on s, c_o on the other side)
one selection serves almost every target: the first a = min(c_s, c_o + 1) rows of s, and the row
of the last of them, the spare (`Selection`). A target that is a reference on side s needs the
first min(c_s − 1, c_o) of s other than itself: the a rows less itself where it is among them,
else less the spare. One on the other side needs the first min(c_s, c_o − 1): all a, or a less
the spare, and where c_s > c_o two fewer than a, which a second, narrower selection serves (the
only case one removal cannot; it arises only on records whose counts differ). A target that is
no reference needs min(c_s, c_o) (OUT alone: c_s): a, a less the spare, or its own selection.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from miakit.errors import MiakitError
from miakit.signals import Signals

T = TypeVar("T")
C = TypeVar("C")


class Fitted:
    """Statistics of `values` [R, n, A] over the rows where `use` [R, n] is True, per record.

    spare [n] (a `Selection`'s; None: none): the row whose value a target leaves out where
    `without` is told it leaves out one value but its own row is not used (−1 where the record
    has no used row).
    """

    def __init__(self, values: np.ndarray, use: np.ndarray, spare: np.ndarray | None = None):
        self.use, self.spare = use, spare
        if spare is not None:
            self.spare_values = values[np.maximum(spare, 0), np.arange(use.shape[1])]  # [n, A]
        self.count = use.sum(axis=0)  # [n]
        masked = np.where(use[..., None], values, np.inf).transpose(1, 2, 0)
        self.sorted = np.ascontiguousarray(masked)  # [n, A, R], unused rows last (+inf)
        self.sorted.sort(axis=-1)
        lower_median = np.maximum((self.count - 1) // 2, 0)
        self.shift = self._take(self.sorted, lower_median[:, None])  # [n, A]
        self.shift = np.where(np.isfinite(self.shift), self.shift, 0.0)
        deviation = np.where(use[..., None], values - self.shift, 0.0)
        self.s1 = deviation.sum(axis=0)  # [n, A]
        self.s2 = np.square(deviation).sum(axis=0)
        self._prefix: np.ndarray | None = None
        # the median of all values, and the four values the median of all but one is made of
        # (positions lo, lo + 1, hi, hi + 1 of count − 1 values; see LeftOut.median)
        count = self.count[:, None]
        self.median_all = 0.5 * (
            self._take(self.sorted, np.maximum((count - 1) // 2, 0))
            + self._take(self.sorted, count // 2)
        )
        lo, hi = np.maximum((count - 2) // 2, 0), (count - 1) // 2
        self.median_parts = [self._take(self.sorted, k) for k in (lo, lo + 1, hi, hi + 1)]

    @staticmethod
    def _take(ordered: np.ndarray, k: np.ndarray) -> np.ndarray:
        """ordered [n, A, R] at positions k along R; k broadcasts with [n, A] (e.g. [T, n, A])
        and is clipped to [0, R − 1]."""
        n, a, r = ordered.shape
        base = (np.arange(n)[:, None] * a + np.arange(a)) * r
        return np.take(ordered.reshape(-1), base + np.clip(k, 0, r - 1))

    def prefix(self) -> np.ndarray:
        """Sums of the first k sorted values, k = 0..R, [n, A, R + 1] (unused rows add 0)."""
        if self._prefix is None:
            finite = np.where(np.isfinite(self.sorted), self.sorted, 0.0)
            prefix = np.zeros((*finite.shape[:-1], finite.shape[-1] + 1))
            np.cumsum(finite, axis=-1, out=prefix[..., 1:])
            self._prefix = prefix
        return self._prefix

    def at_most_own(self, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each row of `rows`: how many used values are ≤ that row's own value, [len(rows),
        n, A]; values [R, n, A] are all rows' values (those fitted, used or not). One stable
        sort of every row's value per record, a running count of the used ones, and the count
        at the end of each tie group."""
        v = np.ascontiguousarray(values.transpose(1, 2, 0))  # [n, A, R]
        order = np.argsort(v, axis=-1, kind="stable")
        ordered = np.take_along_axis(v, order, axis=-1)
        used = np.broadcast_to(self.use.T[:, None, :], v.shape)
        count = np.cumsum(np.take_along_axis(used, order, axis=-1), axis=-1)
        last = np.ones(v.shape, dtype=bool)
        last[..., :-1] = ordered[..., 1:] != ordered[..., :-1]
        big = np.iinfo(count.dtype).max
        # count is non-decreasing: the smallest count at a group end at or after each position
        at_end = np.minimum.accumulate(np.where(last, count, big)[..., ::-1], axis=-1)[..., ::-1]
        out = np.empty_like(at_end)
        np.put_along_axis(out, order, at_end, axis=-1)
        return out[..., rows].transpose(2, 0, 1)

    def without(
        self, rows: np.ndarray, values: np.ndarray, leaves: np.ndarray | None = None
    ) -> LeftOut:
        """The statistics for T targets, each leaving out its row `rows[i]` (−1: none) where that
        row is used, its own values being `values[i]` [n, A]; with `leaves` [T, n] (and a spare),
        a marked target whose row is not used leaves out the spare's value instead."""
        rows = np.asarray(rows)
        own = np.zeros((rows.size, self.count.size), dtype=bool)
        inside = rows >= 0
        own[inside] = self.use[rows[inside]]
        values = np.asarray(values, dtype=np.float64)
        if leaves is None or self.spare is None:
            return LeftOut(self, own, values)
        removed = own | (leaves & (self.spare >= 0))
        return LeftOut(self, removed, np.where(own[..., None], values, self.spare_values))


class LeftOut:
    """Each target's view of a `Fitted`: its own value removed where its row was used (with a
    spare, the spare's value where it was not); `removed` [T, n] and `values` [T, n, A]: whether
    a value is removed, and which.

    Every statistic is [T, n, A] (counts [T, n]); entries of records with too few values are
    meaningless and must be masked by the caller (see `count`).
    """

    def __init__(self, fitted: Fitted, removed: np.ndarray, values: np.ndarray):
        self.fitted, self.removed, self.values = fitted, removed, values
        self.count = fitted.count - removed  # [T, n]
        # deviation of the removed value from the shift, 0 where nothing is removed
        self._dev = np.where(removed[..., None], values - fitted.shift, 0.0)

    def kth(self, k: np.ndarray) -> np.ndarray:
        """The k-th smallest (0-based) of each target's values, k [T, n] or [T, n, A] in range."""
        k = k if k.ndim == 3 else k[..., None]
        ordered = self.fitted.sorted
        at, after = Fitted._take(ordered, k), Fitted._take(ordered, k + 1)
        # the removed value sorts at or before position k exactly when sorted[k] ≥ it
        shifted = self.removed[..., None] & (at >= self.values)
        return np.where(shifted, after, at)

    def median(self) -> np.ndarray:
        """Without a removal, the median of all; with one, the values at the middle positions lo
        and hi of the others are sorted[lo] or sorted[lo + 1] (and so for hi) by one comparison
        each, so no target needs a gather."""
        lo, lo_next, hi, hi_next = self.fitted.median_parts
        v = self.values
        others = 0.5 * (np.where(lo >= v, lo_next, lo) + np.where(hi >= v, hi_next, hi))
        return np.where(self.removed[..., None], others, self.fitted.median_all)

    def mean(self) -> np.ndarray:
        count = np.maximum(self.count, 1)[..., None]
        return self.fitted.shift + (self.fitted.s1 - self._dev) / count

    def std(self) -> np.ndarray:
        """Population std (ddof 0); exactly 0 when the values are all equal."""
        count = np.maximum(self.count, 1)[..., None]
        s1 = self.fitted.s1 - self._dev
        s2 = self.fitted.s2 - np.square(self._dev)
        return np.sqrt(np.maximum(s2 / count - np.square(s1 / count), 0.0))

    def center(self, kind: str) -> np.ndarray:
        return self.median() if kind == "median" else self.mean()

    def first_sum(self, k: np.ndarray) -> np.ndarray:
        """Sum of each target's k smallest values, k [T, n] (0 ≤ k ≤ count)."""
        prefix = self.fitted.prefix()
        k3 = k[..., None]
        plain, one_more = Fitted._take(prefix, k3), Fitted._take(prefix, k3 + 1)
        # the first k of the others are the first k + 1 of all less the removed value when it
        # sorts among those (r < k, i.e. sorted[k − 1] ≥ it)
        before = Fitted._take(self.fitted.sorted, k3 - 1)
        inside = self.removed[..., None] & (k3 >= 1) & (before >= self.values)
        return np.where(inside, one_more - self.values, plain)

    def trimmed_mean(self, trim: float) -> np.ndarray:
        """scipy.stats.trim_mean: drop floor(trim · count) values at each end, mean of the rest."""
        cut = np.floor(trim * self.count).astype(np.int64)
        kept = np.maximum(self.count - 2 * cut, 1)
        return (self.first_sum(self.count - cut) - self.first_sum(cut)) / kept[..., None]


ReferenceCounts = Literal["equal", "all"]
REFERENCE_COUNTS_HELP = (
    "references per record: 'equal' (a target whose references on the record are X IN and Y "
    "OUT fits on the first min(X, Y) of each side in model order (on a balanced split M/2 - 1 "
    "for a member and a non-member alike); an attack reading OUT alone "
    "whose target is no reference: all Y) or 'all' (every reference: a member of the record then "
    "has one IN reference fewer and one OUT more than a non-member, which moves the scores with "
    "few models)"
)


def equal_counts(use: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of the rows where use [R, n] is True, each record's first size[n] in row order (bool
    [R, n]) and the row of the last of them ([n], −1 where none)."""
    kept = use & (np.cumsum(use, axis=0) <= size)
    last = kept.shape[0] - 1 - np.argmax(kept[::-1], axis=0)
    return kept, np.where(kept.any(axis=0), last, -1)


@dataclass(frozen=True)
class Selection:
    """The rows one side of a chunk of records is fitted on, and who reads them (`reference_use`).

    use [R, n]: the rows fitted. spare [n] (None: none): the last of them (−1: none). leaves
    [T, n] (None: no target but by its own row): which targets of the layout leave out one value,
    their own where their row is used, else the spare's (`Fitted.without`). serves [T, n] (None:
    the side's first selection): the (target, record) pairs read from this selection instead of
    the first one.
    """

    use: np.ndarray
    spare: np.ndarray | None = None
    leaves: np.ndarray | None = None
    serves: np.ndarray | None = None


def reference_use(
    keep: np.ndarray, layout: Layout, sides: Sequence[str], counts: str
) -> list[list[Selection]]:
    """Per side named ("IN": the references trained on the record, keep [R, n] True; "OUT": the
    others), its selections: every reference (counts "all"), or ("equal") each target's first
    min(X, Y) on the side, X and Y its IN and OUT references (an attack reading OUT alone, for a
    target that is no reference: all Y), as the module docstring derives: the first selection
    serves most targets, a second one the pairs one removal cannot."""
    refs = layout.is_reference[:, None]
    side_rows = {"IN": keep & refs, "OUT": ~keep & refs}
    if counts == "all":
        return [[Selection(side_rows[side])] for side in sides]
    count = {side: rows.sum(axis=0) for side, rows in side_rows.items()}
    inside = np.broadcast_to((layout.drop >= 0)[:, None], (layout.drop.size, keep.shape[1]))
    trained = keep[np.maximum(layout.drop, 0)] & inside  # [T, n]: a reference and IN
    out = []
    for side in sides:
        c_s, c_o = count[side], count["OUT" if side == "IN" else "IN"]
        mine = trained if side == "IN" else inside & ~trained  # references on this side
        theirs = inside & ~mine  # references on the other side
        need_theirs = np.minimum(c_s, c_o - 1)
        need_outside = np.minimum(c_s, c_o) if len(sides) == 2 else c_s
        size = np.minimum(c_s, c_o + 1) if inside.any() else need_outside
        use, spare = equal_counts(side_rows[side], size)
        leaves = (
            mine | (theirs & (need_theirs == size - 1)) | (~inside & (need_outside == size - 1))
        )
        selections = [Selection(use, spare, leaves)]
        for need, who in ((need_theirs, theirs), (need_outside, ~inside)):
            serves = who & (need != size) & (need != size - 1)
            if serves.any():
                selections.append(Selection(equal_counts(side_rows[side], need)[0], serves=serves))
        out.append(selections)
    return out


class SideFit:
    """One side's statistics for a chunk of records: a `Fitted` per `Selection` of
    `reference_use`, and each target's view of the one that serves it."""

    def __init__(self, values: np.ndarray, selections: Sequence[Selection]):
        self.parts = [(Fitted(values, s.use, s.spare), s) for s in selections]

    def views(
        self, block: np.ndarray, rows: np.ndarray, own: np.ndarray
    ) -> list[tuple[int, LeftOut, np.ndarray | None]]:
        """(part, view, serves) for the targets at layout positions `block`, leaving out `rows`
        (layout.drop[block]) whose values are `own` [T, n, A]; serves [T, n]: the pairs the view
        serves (None: all, where the side has one selection). Parts serving none are left out."""
        later = [s.serves[block] for _, s in self.parts[1:]]
        first = ~np.any(later, axis=0) if later else None
        out = []
        for i, (fitted, s) in enumerate(self.parts):
            leaves = None if s.leaves is None else s.leaves[block]
            serves = first if i == 0 else later[i - 1]
            if serves is None or serves.any():
                out.append((i, fitted.without(rows, own, leaves), serves))
        return out


def merge_served(parts: Sequence[tuple[np.ndarray | None, object]]) -> object:
    """One value per (target, record) from (serves, value) pairs, each value an array [T, n, …]
    (or a tuple of such arrays or None) valid where its serves [T, n] is True (None: everywhere):
    the value of the view that serves each pair (`SideFit.views`)."""
    (_, merged), *rest = parts
    for serves, value in rest:

        def pick(new, old, serves=serves):
            if new is None:
                return None
            mask = serves.reshape(serves.shape + (1,) * (np.ndim(new) - 2))
            return np.where(mask, new, old)

        merged = (
            tuple(map(pick, value, merged)) if isinstance(value, tuple) else pick(value, merged)
        )
    return merged


#: Chunks of work handled at once (NumPy releases the GIL in the array work).
THREADS = max(1, min(4, len(os.sched_getaffinity(0))))


def map_chunks(fn: Callable[[C], T], chunks: Sequence[C]) -> list[T]:
    """fn over chunks of work (record slices, targets, blocks of records) on THREADS threads,
    results in chunk order; the first error (in chunk order) is raised."""
    if THREADS == 1 or len(chunks) <= 1:
        return [fn(c) for c in chunks]
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(fn, chunks))


#: Bytes an attack may keep for a block of targets between its pass over the references and the
#: scores (RMIA's ratios, fixed-variance LiRA's deviations): 298 targets at N = 50,000, A = 18,
#: so one pass for CIFAR-10's 256 models.
KEPT_BYTES = 2 * 2**30


def block_size(per_target_bytes: int, budget: int = 4 * 2**20) -> int:
    """How many targets to handle at once so that one [T, n, A] float64 array stays in budget."""
    return max(1, budget // max(per_target_bytes, 1))


class Layout:
    """Which models an all-targets pass reads and how each target sees them.

    rows: the models read, sorted (references and targets); is_reference [R]: rows that count as
    references; target_rows [T]: each target's row; drop [T]: the row each target leaves out of
    its references (its own, when it is one of them; −1 otherwise); scored [N]: records to score
    (`records` where given, else all; query-only records always).
    """

    def __init__(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ):
        self.targets = np.asarray(list(targets), dtype=np.int64)
        num_models = signals.num_models
        refs = np.arange(num_models) if references is None else np.asarray(list(references), int)
        for name, given in (("target", self.targets), ("reference", refs)):
            if given.size and (given.min() < 0 or given.max() >= num_models):
                raise MiakitError(
                    f"{name} models must lie in [0, {num_models}), got {given.tolist()}"
                )
        self.rows = np.union1d(refs, self.targets)
        self.is_reference = np.isin(self.rows, refs)
        self.target_rows = np.searchsorted(self.rows, self.targets)
        self.drop = np.where(self.is_reference[self.target_rows], self.target_rows, -1)
        self.scored = np.ones(signals.num_records, dtype=bool)
        if records is not None:
            records = np.asarray(records, dtype=bool)
            if records.shape != (signals.num_fit,) and records.shape != (signals.num_records,):
                raise MiakitError(
                    f"records must be a bool mask over the {signals.num_fit} pool records, "
                    f"got shape {records.shape}"
                )
            self.scored[: records.size] = records
            self.scored[signals.num_fit :] = True

    def references_of(self, block: np.ndarray) -> np.ndarray:
        """bool [len(block), R]: the rows each target of the block uses as references."""
        refs = np.broadcast_to(self.is_reference, (block.size, self.rows.size)).copy()
        drop = self.drop[block]
        refs[np.flatnonzero(drop >= 0), drop[drop >= 0]] = False
        return refs

    def counts(self, use: np.ndarray, block: np.ndarray) -> np.ndarray:
        """[len(block), n]: how many rows where `use` [R, n] each target of the block keeps once
        its own row is left out."""
        drop = self.drop[block]
        own = np.where((drop >= 0)[:, None], use[np.maximum(drop, 0)], False)
        return use.sum(axis=0) - own

    def blocks(self, num_records: int, num_augmentations: int) -> list[np.ndarray]:
        """Target positions in blocks small enough for a few [T, n, A] float64 arrays."""
        size = block_size(8 * num_records * num_augmentations)
        return [
            np.arange(i, min(i + size, self.targets.size))
            for i in range(0, self.targets.size, size)
        ]


#: Bytes of float64 logits handed to a transform at once: small enough to stay in cache, where
#: the transforms run about twice as fast as on a whole model's logits.
TRANSFORM_BYTES = 2**20


def read_signal(
    signals: Signals,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray],
    models: Sequence[int],
    records: slice,
) -> np.ndarray:
    """transform(logits, labels) of each model in turn, stacked: [len(models), n, A] float64.
    One model's logits at a time, TRANSFORM_BYTES of them per call (transforms are per record)."""
    start, stop = records.start or 0, records.stop
    out = np.empty((len(models), stop - start, signals.num_augmentations))
    step = max(1, TRANSFORM_BYTES // (8 * signals.num_augmentations * signals.num_classes))
    for i, m in enumerate(models):
        for first in range(start, stop, step):
            part = slice(first, min(first + step, stop))
            logits = signals.read_logits([int(m)], part)[0]
            out[i, first - start : part.stop - start] = transform(logits, signals.labels[part])
    return out


def spread_moments(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """One chunk's part of `global_spread`: per row of values [R, n, A] and side (IN where keep
    [R, n], OUT elsewhere), the count, mean and sum of squared deviations over the chunk's
    records and augmentations, [2 (IN, OUT), 3, R]."""
    out = np.empty((2, 3, values.shape[0]))
    for side, use in enumerate((keep, ~keep)):
        n = use.sum(axis=1) * values.shape[-1]
        mean = np.where(use[..., None], values, 0.0).sum(axis=(1, 2)) / np.maximum(n, 1)
        dev = np.where(use[..., None], values - mean[:, None, None], 0.0)
        out[side] = n, mean, np.square(dev).sum(axis=(1, 2))
    return out


def merged_spread(parts: Sequence[np.ndarray], layout: Layout) -> dict[str, np.ndarray]:
    """Per target, the std of all its references' IN values and of their OUT values from the
    chunks' `spread_moments` (merged in chunk order by Chan et al.'s pairwise update): {"IN":
    [T], "OUT": [T]}. A side with fewer than two values or no spread gets 1.0."""
    total = np.zeros((2, 3, layout.rows.size))
    for part in parts:
        count, mean, m2 = total[:, 0], total[:, 1], total[:, 2]
        n, chunk_mean, chunk_m2 = part[:, 0], part[:, 1], part[:, 2]
        merged = count + n
        delta = chunk_mean - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[:] = np.where(merged > 0, mean + delta * n / merged, 0.0)
            m2[:] = m2 + chunk_m2 + np.where(merged > 0, delta**2 * count * n / merged, 0.0)
        count[:] = merged
    weights = layout.references_of(np.arange(layout.targets.size)).astype(np.float64)  # [T, R]
    out = {}
    for side, (count, mean, m2) in zip(("IN", "OUT"), total, strict=True):
        values = weights @ count
        centre = (weights @ (count * mean)) / np.maximum(values, 1)
        spread = weights @ m2 + (weights * count * np.square(mean - centre[:, None])).sum(axis=1)
        std = np.sqrt(np.maximum(spread, 0.0) / np.maximum(values, 1))
        out[side] = np.where((values > 1) & (std > 0), std, 1.0)
    return out


def global_spread(
    signals: Signals,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray],
    layout: Layout,
) -> dict[str, np.ndarray]:
    """Per target, the std of all its references' IN values and of their OUT values over every
    pool record (query-only ones excluded) and augmentation: {"IN": [T], "OUT": [T]}, see
    `merged_spread`. One pass over the references' values, on threads."""

    def moments(records: slice) -> np.ndarray:
        values = read_signal(signals, transform, layout.rows, records)
        return spread_moments(values, signals.keep[layout.rows, records])

    pool = [c for c in signals.record_chunks(layout.rows.size) if c.start < signals.num_fit]
    return merged_spread(map_chunks(moments, pool), layout)


def require(
    count: np.ndarray, scored: np.ndarray, first: int, targets: np.ndarray, what: str
) -> None:
    """Stop when a scored record has no value to fit: count [T, n], scored [n]."""
    missing = (count == 0) & scored[None]
    if missing.any():
        t, n = np.argwhere(missing)[0]
        raise MiakitError(
            f"{what}, but record {first + n} has none for target model {targets[t]}; "
            "use more models or a balanced split"
        )
