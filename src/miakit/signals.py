"""What every attack reads (logits, labels, keep, optional loss traces) and the logit transforms.

Transforms work in float64 with stable log-sum-exp. They take logits of shape [..., n, A, C] and
labels of shape [n] (the record axis is third from the end) and return arrays of shape [..., n, A].

Two properties hold for every transform, and every attack inherits them:
- Everything derived from p_y (loss, log p_y, p_y) is computed from the log-odds φ (loss =
  softplus(−φ)), so it keeps the order of p_y wherever float64 can tell p_y from 1, instead of
  cancelling to exactly 0 on confident records.
- Sums over classes are taken in sorted order, so a transform does not depend on the order of the
  classes: two records whose logits differ only by which class is the label get identical values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from miakit.errors import MiakitError
from miakit.output_restriction import check_output, restrict_logits
from miakit.store import RunDir, load_npy

SignalKind = Literal[
    "loss",
    "log_odds",
    "true_prob",
    "max_prob",
    "entropy",
    "modified_entropy",
    "taylor_soft_margin",
    "hinge",
]

#: Upper bound on the float64 bytes one chunk of logits may take when read for all models.
CHUNK_BYTES = 256 * 2**20


def _broadcast_labels(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels [n] as an index array of shape logits.shape[:-1] + (1,)."""
    return np.broadcast_to(labels[:, None], logits.shape[:-1])[..., None]


def _sum_exp_shifted(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Σ exp(z − shift), shift) over the last axis, shift the finite maximum (0 if none), summed
    in ascending order of z so that the result does not depend on the order of the classes
    (z is sorted first: its last value is the maximum, and exp keeps the order)."""
    ordered = np.sort(z, axis=-1)
    shift = ordered[..., -1:]
    shift = np.where(np.isfinite(shift), shift, 0.0)
    ordered -= shift
    return np.sum(np.exp(ordered, out=ordered), axis=-1, keepdims=True), shift


def logsumexp(z: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """log Σ exp(z) along `axis`, shifted by the maximum; entries of −inf contribute nothing.

    The terms are summed in ascending order, so permuting z along `axis` leaves the result
    bit-for-bit unchanged (ties stay ties whichever class is the label). Plain NumPy: faster than
    scipy.special.logsumexp on [M, n, A, C] chunks, which dominate LiRA's scoring time.
    """
    moved = np.moveaxis(np.asarray(z, dtype=np.float64), axis, -1)
    total, shift = _sum_exp_shifted(moved)
    out = np.moveaxis(np.log(total) + shift, -1, axis)
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return z - logsumexp(z, axis=-1, keepdims=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + eˣ) without overflow, accurate for very negative x (where it is ≈ eˣ)."""
    return np.logaddexp(0.0, x)


def _without(z: np.ndarray, index: np.ndarray) -> np.ndarray:
    """z with the class at `index` [..., 1] set to −inf (it then adds exactly 0 to any sum)."""
    out = z.copy()
    np.put_along_axis(out, index, -np.inf, axis=-1)
    return out


def log_odds(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's φ = log p_y − log(1 − p_y) = z_y − logsumexp_{j≠y} z_j: finite even when p_y rounds
    to 1, and the same whichever position the label's class has."""
    z = np.asarray(logits, dtype=np.float64)
    index = _broadcast_labels(z, labels)
    z_true = np.take_along_axis(z, index, axis=-1)[..., 0]
    return z_true - logsumexp(_without(z, index), axis=-1)


def _top_log_odds(z: np.ndarray) -> np.ndarray:
    """φ of the largest class, z_max − logsumexp of the others, [...] from float64 z [..., C]."""
    top = np.argmax(z, axis=-1)[..., None]
    return np.take_along_axis(z, top, axis=-1)[..., 0] - logsumexp(_without(z, top), axis=-1)


def hinge(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The hinge score z_y − max_{j≠y} z_j (Carlini et al. 2022; Bertran et al. 2023's QMIA
    score): positive exactly when the label is the unique predicted class."""
    z = np.asarray(logits, dtype=np.float64)
    index = _broadcast_labels(z, labels)
    return np.take_along_axis(z, index, axis=-1)[..., 0] - _without(z, index).max(axis=-1)


def true_class_log_prob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y = −softplus(−φ): it keeps the order of p_y where float64 can tell p_y from 1, unlike
    z_y − logsumexp(z), which cancels to exactly 0 once the true-class margin passes about 37."""
    return -_softplus(-log_odds(logits, labels))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Loss −log p_y = softplus(−φ) (see `true_class_log_prob`)."""
    return _softplus(-log_odds(logits, labels))


def max_prob(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Largest softmax probability (labels unused: the confidence attack needs none)."""
    return np.exp(-_softplus(-_top_log_odds(np.asarray(logits, dtype=np.float64))))


def _replace_top(values: np.ndarray, z: np.ndarray, formula) -> None:
    """Set values [..., C] at the largest class to formula(φ_max) where p_max > 1/2 (φ_max > 0),
    the only place where the plain formulas lose precision. With a tie for the largest class,
    p_max ≤ 1/2 and nothing is replaced, so which of the tied classes comes first does not matter."""
    top = np.argmax(z, axis=-1)[..., None]
    phi = _top_log_odds(z)[..., None]
    current = np.take_along_axis(values, top, axis=-1)
    with np.errstate(all="ignore"):
        np.put_along_axis(values, top, np.where(phi > 0, formula(phi), current), axis=-1)


def _stable_log_softmax(z: np.ndarray) -> np.ndarray:
    """log p_i of float64 z [..., C], the largest class's as −softplus(−φ_max) so it does not
    round to 0 when the model is confident."""
    logp = z - logsumexp(z, axis=-1, keepdims=True)
    _replace_top(logp, z, lambda phi: -_softplus(-phi))
    return logp


def _sorted_sum(terms: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Σ over the last axis of `terms`, added in ascending order of z, then of the terms, so the
    sum does not depend on the order of the classes."""
    order = np.lexsort((terms, z), axis=-1)
    return np.take_along_axis(terms, order, axis=-1).sum(axis=-1)


def _log_one_minus_softmax(z: np.ndarray) -> np.ndarray:
    """log(1 − p_i) for every class of float64 z [..., C], finite even when p_i rounds to 1.

    Only the largest class can have p_i > 1/2; there log(1 − p_i) = −softplus(φ_max). Elsewhere
    log1p(−p_i) is accurate (and it is finite: p_i ≤ 1/2).
    """
    with np.errstate(divide="ignore"):  # log1p(−1) at the top class, replaced just below
        out = np.log1p(-np.exp(log_softmax(z)))
    _replace_top(out, z, lambda phi: -_softplus(phi))
    return out


def entropy(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Shannon entropy −Σ p_i log p_i of the softmax (labels unused)."""
    z = np.asarray(logits, dtype=np.float64)
    logp = _stable_log_softmax(z)
    return -_sorted_sum(np.exp(logp) * logp, z)


def modified_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Song & Mittal's Mentr = −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i) (USENIX Sec 2021)."""
    z = np.asarray(logits, dtype=np.float64)
    phi = log_odds(z, labels)
    terms = np.exp(log_softmax(z)) * _log_one_minus_softmax(z)
    np.put_along_axis(terms, _broadcast_labels(z, labels), 0.0, axis=-1)
    # 1 − p_y = e^{−softplus(φ)}, −log p_y = softplus(−φ)
    return np.exp(-_softplus(phi)) * _softplus(-phi) - _sorted_sum(terms, z)


def _taylor_exp(x: np.ndarray, order: int) -> np.ndarray:
    """Σ_{i=0}^{order} x^i / i!: positive for even orders (de Brébisson & Vincent, 2016)."""
    term = np.ones_like(x)
    total = np.ones_like(x)
    for i in range(1, order + 1):
        term *= x
        term /= i
        total += term
    return total


def taylor_soft_margin(
    logits: np.ndarray,
    labels: np.ndarray,
    temperature: float = 2.0,
    margin: float = 0.6,
    order: int = 4,
) -> np.ndarray:
    """RMIA's Taylor soft-margin softmax of the true class (Zarifzadeh et al., ICML 2024).

    With x = z / T and t(v) the Taylor polynomial of e^v: t(x_y − m) / (t(x_y − m) + Σ_{j≠y} t(x_j)).
    Defaults are RMIA's CIFAR-10 settings (T = 2, m = 0.6, order 4).
    """
    x = np.asarray(logits, dtype=np.float64) / temperature
    x_true = np.take_along_axis(x, _broadcast_labels(x, labels), axis=-1)
    true_term = _taylor_exp(x_true - margin, order)[..., 0]
    # the other classes' terms summed in ascending order of x, so the label's position changes
    # nothing: the terms of the sorted x, with the label's own (the first of those tied with
    # it) replaced by 0
    powers = _taylor_exp(np.sort(x, axis=-1), order)
    below = (x < x_true).sum(axis=-1, keepdims=True)
    np.put_along_axis(powers, below, 0.0, axis=-1)
    return true_term / (powers.sum(axis=-1) + true_term)


def sorted_probs(logits: np.ndarray, k: int) -> np.ndarray:
    """The k largest softmax probabilities in decreasing order, [..., k] (Salem et al.'s features)."""
    return np.sort(softmax(logits), axis=-1)[..., ::-1][..., :k]


TRANSFORMS = {
    "loss": cross_entropy,
    "log_odds": log_odds,
    "true_prob": lambda z, y: np.exp(true_class_log_prob(z, y)),
    "max_prob": max_prob,
    "entropy": entropy,
    "modified_entropy": modified_entropy,
    "taylor_soft_margin": taylor_soft_margin,
    "hinge": hinge,
}


@dataclass(frozen=True)
class TokenSignals:
    """A causal LM's per-token outputs on text records (`miakit.query.query_tokens`), what the
    text attacks (`miakit.attacks.text`) read besides the sequence signal in the logits.

    logprobs, mu, sigma, logprobs_lower: M arrays [N, L − 1] (float32, memory-mapped from a run;
    NaN at PAD targets, which is the mask): log p of each actual next token, the mean and
    standard deviation of log p over the model's next-token distribution, and log p of each
    next token of the record lowercased (`miakit.tokens.lowercase`). zlib_bytes: int [N], each
    record's zlib-compressed length in bytes (`miakit.tokens.zlib_bytes`). logprobs_recall:
    optional M arrays [N, L − 1], log p of each actual next token with the ReCaLL prefix before
    the record (`miakit.tokens.RECALL_STAT`; None where the run has no query.recall_prefix).
    A run has all but the optional ones; arrays given to `miakit.score` may lack those the
    attack does not read (`TextAttack.token_stats`), which are None.
    """

    logprobs: Sequence[np.ndarray]
    mu: Sequence[np.ndarray] | None = None
    sigma: Sequence[np.ndarray] | None = None
    logprobs_lower: Sequence[np.ndarray] | None = None
    zlib_bytes: np.ndarray | None = None
    logprobs_recall: Sequence[np.ndarray] | None = None
    #: The reference LM's log p of each actual next token [N, L − 1] (`miakit.reference_lm`:
    #: an hf target's base model), or None where the run has none.
    reference_logprobs: np.ndarray | None = None

    @classmethod
    def from_run(cls, run: RunDir, num_models: int, zlib_bytes: np.ndarray) -> TokenSignals:
        """Memory-map every model's token statistics (the ReCaLL one where every model has it);
        MiakitError naming a missing file."""
        from miakit.tokens import RECALL_STAT, TOKEN_STATS

        arrays = []
        for name in TOKEN_STATS:
            paths = [run.token_stat(m, name) for m in range(num_models)]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise MiakitError(f"{missing[0]} is missing; run `miakit query {run.root}`")
            arrays.append([load_npy(p, mmap=True) for p in paths])
        recall = [run.token_stat(m, RECALL_STAT) for m in range(num_models)]
        conditional = None
        if all(p.is_file() for p in recall):
            conditional = [load_npy(p, mmap=True) for p in recall]
        return cls(*arrays, np.asarray(zlib_bytes), conditional)

    def read(self, name: str, m: int, records: slice = slice(None)) -> np.ndarray:
        """One statistic ("logprobs", "mu", "sigma", "logprobs_lower", "logprobs_recall") of
        model m as float64 [n, L − 1]."""
        return np.asarray(getattr(self, name)[m][records], dtype=np.float64)


@dataclass(frozen=True)
class Signals:
    """The stored outputs of M models on N pool records; attacks read nothing else.

    logits: M arrays of shape [N, A, C] (memory-mapped when loaded from a run), labels: int [N],
    keep: bool [M, N] (model m trained on record n), traces: optional M arrays [E+1, N].

    queries: the last `queries` records are scored but never learnt from (out-of-distribution
    studies append them): no model trained on them, and an attack fits nothing on them (no
    population, threshold, training pair or pooled statistic), so the other records' scores are
    exactly what they are without them. Record chunks never mix the two kinds.

    output: what the deployed model's API returns (`query.output`, `miakit.output_restriction`):
    `read_logits` and `signal` return the restricted outputs, as log-probabilities; the stored
    logits stay full. features: optional, the pool records' features [N, ...] (images or feature
    vectors) for attacks that read them (QMIA); None where the run has none (brought-in models)
    and with query-only records.
    """

    logits: Sequence[np.ndarray]
    labels: np.ndarray
    keep: np.ndarray
    traces: Sequence[np.ndarray] | None = None
    queries: int = 0
    output: str = "logits"
    features: np.ndarray | None = None
    #: a causal LM's per-token outputs (text records only; `TokenSignals`)
    tokens: TokenSignals | None = None

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_models(self) -> int:
        return self.keep.shape[0]

    @property
    def num_records(self) -> int:
        return self.keep.shape[1]

    @property
    def num_fit(self) -> int:
        """Records an attack may learn from: all but the trailing query-only records."""
        return self.num_records - self.queries

    @property
    def num_augmentations(self) -> int:
        return self.logits[0].shape[1]

    @property
    def num_classes(self) -> int:
        return self.logits[0].shape[2]

    @classmethod
    def from_arrays(
        cls,
        logits: np.ndarray,
        labels: np.ndarray,
        keep: np.ndarray,
        traces: np.ndarray | None = None,
        queries: int = 0,
        output: str = "logits",
        features: np.ndarray | None = None,
    ) -> Signals:
        """From in-memory arrays: logits [M, N, A, C], traces [M, E+1, N], features [N, ...]."""
        return cls(
            list(logits), np.asarray(labels), np.asarray(keep), traces, queries, output, features
        )

    def with_queries(self, logits: Sequence[np.ndarray], labels: np.ndarray) -> Signals:
        """These signals plus K query-only records: logits M arrays [K, A, C], labels [K]. The
        pool's logits stay memory-mapped; traces and features are dropped (nobody trained on the
        queries, and their features are not at hand); the output restriction is kept."""
        if len(logits) != self.num_models:
            raise MiakitError(f"query logits for {len(logits)} models, expected {self.num_models}")
        if self.queries:
            raise MiakitError("these signals hold query-only records already")
        count = len(labels)
        keep = np.concatenate([self.keep, np.zeros((self.num_models, count), dtype=bool)], axis=1)
        return Signals(
            [_Appended(own, more) for own, more in zip(self.logits, logits, strict=True)],
            np.concatenate([self.labels, np.asarray(labels, dtype=self.labels.dtype)]),
            keep,
            queries=count,
            output=self.output,
        )

    def split_queries(self) -> tuple[Signals, list[np.ndarray], np.ndarray]:
        """The pool records alone, and the query-only records' logits (M arrays [K, A, C]) and
        labels [K]: the inverse of `with_queries`."""
        n = self.num_fit

        def parts(logits) -> tuple[np.ndarray, np.ndarray]:
            if isinstance(logits, _Appended):
                return logits.first, logits.second
            return logits[:n], np.asarray(logits[n:])

        pool, queries = zip(*(parts(m) for m in self.logits), strict=True)
        traces = None if self.traces is None else [t[:, :n] for t in self.traces]
        return (
            Signals(list(pool), self.labels[:n], self.keep[:, :n], traces),
            list(queries),
            self.labels[n:],
        )

    @classmethod
    def from_run(
        cls, run: RunDir, output: str = "logits", features: np.ndarray | None = None
    ) -> Signals:
        """Memory-map a run's logits; works for runs miakit trained and for brought-in models.
        output: `query.output`; features: the pool's [N, ...], where an attack reads them."""
        keep = load_npy(run.keep)
        labels = load_npy(run.labels)
        if keep.ndim != 2:
            raise MiakitError(f"{run.keep} must be a bool matrix [M, N], got shape {keep.shape}")
        missing = [str(run.logits(m)) for m in range(keep.shape[0]) if not run.logits(m).is_file()]
        if missing:
            raise MiakitError(
                f"keep.npy describes {keep.shape[0]} models but {len(missing)} have no logits.npy, "
                f"e.g. {missing[0]}; run `miakit query` or add the files"
            )
        logits = [load_npy(run.logits(m), mmap=True) for m in range(keep.shape[0])]
        traces = None
        if all(run.trace(m).is_file() for m in range(keep.shape[0])):
            traces = [load_npy(run.trace(m), mmap=True) for m in range(keep.shape[0])]
        return cls(logits, labels, keep, traces, output=output, features=features)

    def record_chunks(self, num_models: int | None = None) -> Iterator[slice]:
        """Slices of records small enough that their float64 logits for all models fit CHUNK_BYTES;
        the query-only records come in chunks of their own."""
        models = num_models or self.num_models
        per_record = 8 * models * self.num_augmentations * self.num_classes
        size = max(1, CHUNK_BYTES // per_record)
        for first, end in ((0, self.num_fit), (self.num_fit, self.num_records)):
            for start in range(first, end, size):
                yield slice(start, min(start + size, end))

    def read_logits(self, models: Sequence[int], records: slice = slice(None)) -> np.ndarray:
        """Logits [len(models), n, A, C] as float64, restricted to what `output` returns (full
        logits by default); stops on NaN or infinity in the stored logits, naming where."""
        out = np.stack([np.asarray(self.logits[m][records], dtype=np.float64) for m in models])
        if not np.isfinite(out).all():
            bad_model, bad_record = np.argwhere(~np.isfinite(out).all(axis=(2, 3)))[0]
            first = records.start or 0
            raise MiakitError(
                f"logits of model {models[bad_model]} hold NaN or infinity "
                f"(first at record {first + bad_record}); retrain or re-query that model"
            )
        return restrict_logits(out, self.output)

    def signal(
        self, kind: SignalKind, models: Sequence[int], records: slice = slice(None)
    ) -> np.ndarray:
        """A transform of the logits, [len(models), n, A]."""
        return TRANSFORMS[kind](self.read_logits(models, records), self.labels[records])


class _Appended:
    """Two record arrays [N, A, C] and [K, A, C] read as one [N + K, A, C] by record slices,
    without copying the first (often memory-mapped) one."""

    def __init__(self, first: np.ndarray, second: np.ndarray):
        if first.shape[1:] != second.shape[1:]:
            raise MiakitError(
                f"query logits have shape {second.shape}, expected [K, {first.shape[1]}, "
                f"{first.shape[2]}] like the pool's"
            )
        self.first, self.second = first, np.asarray(second)
        self.shape = (len(first) + len(second), *first.shape[1:])
        self.ndim, self.dtype = first.ndim, first.dtype

    def __getitem__(self, records: slice) -> np.ndarray:
        start, stop, step = records.indices(self.shape[0])
        if step != 1:
            raise IndexError("appended logits are read by contiguous record slices")
        n = len(self.first)
        parts = [
            self.first[start : min(stop, n)],
            self.second[max(start - n, 0) : max(stop - n, 0)],
        ]
        return np.concatenate([np.asarray(p) for p in parts if len(p)] or [self.first[:0]])


def validate(signals: Signals) -> None:
    """Check shapes and ranges once, so attacks can trust them; every message says what was expected."""
    keep, labels = signals.keep, signals.labels
    if keep.dtype != np.bool_:
        raise MiakitError(f"keep must be a bool matrix [M, N], got dtype {keep.dtype}")
    if keep.ndim != 2:
        raise MiakitError(f"keep must be a bool matrix [M, N], got shape {keep.shape}")
    num_models, num_records = keep.shape
    if labels.shape != (num_records,) or not np.issubdtype(labels.dtype, np.integer):
        raise MiakitError(
            f"labels must be integers of shape [N] = ({num_records},), "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if len(signals.logits) != num_models:
        raise MiakitError(f"keep has {num_models} rows but there are {len(signals.logits)} models")
    expected = signals.logits[0].shape
    for m, logits in enumerate(signals.logits):
        if logits.ndim != 3 or logits.shape[0] != num_records or logits.shape != expected:
            raise MiakitError(
                f"logits of model {m} must have shape [N, A, C] = ({num_records}, A, C) like "
                f"model 0's {expected}, got {logits.shape}"
            )
    if labels.min() < 0 or labels.max() >= expected[2]:
        raise MiakitError(
            f"labels must lie in [0, {expected[2]}) for logits with {expected[2]} classes, "
            f"got range [{labels.min()}, {labels.max()}]"
        )
    check_output(signals.output, expected[2])
    features = signals.features
    if features is not None and (features.ndim < 2 or len(features) != num_records):
        raise MiakitError(
            f"features must have shape [N, ...] = ({num_records}, ...), one row per record, "
            f"got {features.shape}"
        )
    if not 0 <= signals.queries < num_records:
        raise MiakitError(f"queries must lie in [0, {num_records}), got {signals.queries}")
    if signals.queries and keep[:, num_records - signals.queries :].any():
        raise MiakitError("query-only records must be OUT for every model")
    never_out = np.flatnonzero(keep.all(axis=0))
    if never_out.size:
        raise MiakitError(
            f"{never_out.size} records are IN for every model (e.g. record {never_out[0]}): "
            "each record must be OUT for at least one model to be attacked"
        )
    if signals.tokens is not None:
        _validate_tokens(signals.tokens, num_models, num_records)
    if signals.traces is not None:
        for m, trace in enumerate(signals.traces):
            if trace.ndim != 2 or trace.shape[1] != num_records:
                raise MiakitError(
                    f"trace of model {m} must have shape [E+1, N=({num_records})], got {trace.shape}"
                )


def _validate_tokens(tokens: TokenSignals, num_models: int, num_records: int) -> None:
    if tokens.zlib_bytes is not None and tokens.zlib_bytes.shape != (num_records,):
        raise MiakitError(
            f"zlib_bytes must have shape [N] = ({num_records},), got {tokens.zlib_bytes.shape}"
        )
    for name in ("logprobs", "mu", "sigma", "logprobs_lower", "logprobs_recall"):
        arrays = getattr(tokens, name)
        if arrays is None:
            continue
        if len(arrays) != num_models:
            raise MiakitError(f"token {name} for {len(arrays)} models, expected {num_models}")
        for m, array in enumerate(arrays):
            if array.ndim != 2 or array.shape != (num_records, tokens.logprobs[0].shape[1]):
                raise MiakitError(
                    f"token {name} of model {m} must have shape [N, L - 1] = ({num_records}, "
                    f"{tokens.logprobs[0].shape[1]}), got {array.shape}"
                )
