"""What every attack reads (logits, labels, keep, optional loss traces) and the logit transforms.

Transforms work in float64 with stable log-sum-exp. They take logits of shape [..., n, A, C] and
labels of shape [n] (the record axis is third from the end) and return arrays of shape [..., n, A].
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import logsumexp

from miakit.errors import MiakitError
from miakit.store import RunDir, load_npy

SignalKind = Literal["loss", "log_odds", "true_prob", "max_prob"]

#: Upper bound on the float64 bytes one chunk of logits may take when read for all models.
CHUNK_BYTES = 256 * 2**20


def _broadcast_labels(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels [n] as an index array of shape logits.shape[:-1] + (1,)."""
    return np.broadcast_to(labels[:, None], logits.shape[:-1])[..., None]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return z - logsumexp(z, axis=-1, keepdims=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def true_class_log_prob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y."""
    logp = log_softmax(logits)
    return np.take_along_axis(logp, _broadcast_labels(logp, labels), axis=-1)[..., 0]


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Loss −log p_y."""
    return -true_class_log_prob(logits, labels)


def log_odds(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's φ = log p_y − log(1 − p_y) = z_y − logsumexp_{j≠y} z_j: finite even when p_y rounds to 1."""
    z = np.asarray(logits, dtype=np.float64)
    index = _broadcast_labels(z, labels)
    z_true = np.take_along_axis(z, index, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, index, -np.inf, axis=-1)
    return z_true - logsumexp(others, axis=-1)


def max_prob(logits: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Largest softmax probability (labels unused: the confidence attack needs none)."""
    return np.exp(np.max(log_softmax(logits), axis=-1))


TRANSFORMS = {
    "loss": cross_entropy,
    "log_odds": log_odds,
    "true_prob": lambda z, y: np.exp(true_class_log_prob(z, y)),
    "max_prob": max_prob,
}


@dataclass(frozen=True)
class Signals:
    """The stored outputs of M models on N pool records; attacks read nothing else.

    logits: M arrays of shape [N, A, C] (memory-mapped when loaded from a run), labels: int [N],
    keep: bool [M, N] (model m trained on record n), traces: optional M arrays [E+1, N].
    """

    logits: Sequence[np.ndarray]
    labels: np.ndarray
    keep: np.ndarray
    traces: Sequence[np.ndarray] | None = None

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_models(self) -> int:
        return self.keep.shape[0]

    @property
    def num_records(self) -> int:
        return self.keep.shape[1]

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
    ) -> Signals:
        """From in-memory arrays: logits [M, N, A, C], traces [M, E+1, N]."""
        return cls(list(logits), np.asarray(labels), np.asarray(keep), traces)

    @classmethod
    def from_run(cls, run: RunDir) -> Signals:
        """Memory-map a run's logits; works for runs miakit trained and for brought-in models."""
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
        return cls(logits, labels, keep, traces)

    def record_chunks(self, num_models: int | None = None) -> Iterator[slice]:
        """Slices of records small enough that their float64 logits for all models fit CHUNK_BYTES."""
        models = num_models or self.num_models
        per_record = 8 * models * self.num_augmentations * self.num_classes
        size = max(1, CHUNK_BYTES // per_record)
        for start in range(0, self.num_records, size):
            yield slice(start, min(start + size, self.num_records))

    def read_logits(self, models: Sequence[int], records: slice = slice(None)) -> np.ndarray:
        """Logits [len(models), n, A, C] as float64; stops on NaN or infinity, naming where."""
        out = np.stack([np.asarray(self.logits[m][records], dtype=np.float64) for m in models])
        if not np.isfinite(out).all():
            bad_model, bad_record = np.argwhere(~np.isfinite(out).all(axis=(2, 3)))[0]
            first = records.start or 0
            raise MiakitError(
                f"logits of model {models[bad_model]} hold NaN or infinity "
                f"(first at record {first + bad_record}); retrain or re-query that model"
            )
        return out

    def signal(
        self, kind: SignalKind, models: Sequence[int], records: slice = slice(None)
    ) -> np.ndarray:
        """A transform of the logits, [len(models), n, A]."""
        return TRANSFORMS[kind](self.read_logits(models, records), self.labels[records])


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
    never_out = np.flatnonzero(keep.all(axis=0))
    if never_out.size:
        raise MiakitError(
            f"{never_out.size} records are IN for every model (e.g. record {never_out[0]}): "
            "each record must be OUT for at least one model to be attacked"
        )
    if signals.traces is not None:
        for m, trace in enumerate(signals.traces):
            if trace.ndim != 2 or trace.shape[1] != num_records:
                raise MiakitError(
                    f"trace of model {m} must have shape [E+1, N=({num_records})], got {trace.shape}"
                )
