"""ROC curves and the figures read off them, on (scores, membership) arrays alone.

Conventions (DESIGN.md): the full ROC with one point per distinct score (ties move together, no
points dropped, no interpolation); TPR at FPR x = the largest TPR whose FPR ≤ x; AUC by the
trapezoid rule; balanced accuracy = max over thresholds of 1 − (FPR + FNR)/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miakit.errors import MiakitError


def _value(x: np.ndarray) -> float | np.ndarray:
    """A float for one curve, an array [B] for a batch of curves."""
    return float(x) if np.ndim(x) == 0 else x


@dataclass(frozen=True)
class Roc:
    """Points ordered by decreasing threshold, starting at (0, 0): predict member iff score ≥ threshold.

    fpr, tpr and false_positives are [P] for one curve or [B, P] for a batch of curves over the
    same scores with different record weights (bootstrap resamples); every figure is then [B].
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    false_positives: np.ndarray

    def auc(self) -> float | np.ndarray:
        return _value(np.trapezoid(self.tpr, self.fpr, axis=-1))

    def point_at_fpr(self, max_fpr: float) -> int | np.ndarray:
        """Index of the point with the largest TPR whose FPR ≤ max_fpr; of several with that TPR,
        the one with the fewest false positives (the highest threshold)."""
        allowed_tpr = np.where(self.fpr <= max_fpr, self.tpr, -1.0)
        best = allowed_tpr == allowed_tpr.max(axis=-1, keepdims=True)
        index = np.argmax(best, axis=-1)
        return int(index) if np.ndim(index) == 0 else index

    def _at(self, values: np.ndarray, max_fpr: float) -> np.ndarray:
        index = np.asarray(self.point_at_fpr(max_fpr))
        return np.take_along_axis(values, index[..., None], axis=-1)[..., 0]

    def tpr_at_fpr(self, max_fpr: float) -> float | np.ndarray:
        return _value(self._at(self.tpr, max_fpr))

    def threshold_at_fpr(self, max_fpr: float) -> float:
        """τ behind tpr_at_fpr of one curve: predict member iff score ≥ τ (inf: predict none)."""
        return float(self.thresholds[self.point_at_fpr(max_fpr)])

    def false_positives_at_fpr(self, max_fpr: float) -> int | np.ndarray:
        """How many non-members tpr_at_fpr rests on: at FPR 0.1% often a handful."""
        count = self._at(self.false_positives, max_fpr)
        return int(count) if np.ndim(count) == 0 else count

    def balanced_accuracy(self) -> float | np.ndarray:
        return _value((1 + self.tpr - self.fpr).max(axis=-1) / 2)


def roc_curve(scores: np.ndarray, members: np.ndarray, weights: np.ndarray | None = None) -> Roc:
    """The ROC of (scores, members); `weights` [N] or [B, N] count each record that many times
    (a bootstrap resample as multiplicities), giving one curve per row."""
    scores = np.asarray(scores, dtype=np.float64)
    members = np.asarray(members, dtype=bool)
    if scores.shape != members.shape or scores.ndim != 1:
        raise MiakitError(
            f"scores and membership must be 1-D arrays of one length, got {scores.shape} "
            f"and {members.shape}"
        )
    if np.isnan(scores).any():
        raise MiakitError("scores hold NaN: an attack produced no score for some records")
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    positives = (weights * members).sum(axis=-1, keepdims=True)
    negatives = (weights * ~members).sum(axis=-1, keepdims=True)
    if (positives == 0).any() or (negatives == 0).any():
        raise MiakitError(
            f"a ROC needs members and non-members, got {positives.min():g} members and "
            f"{negatives.min():g} others"
        )
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_members, sorted_weights = (
        scores[order],
        members[order],
        weights[..., order],
    )
    # the last index of each run of equal scores: all records tied at a threshold flip together
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), len(scores) - 1]
    tp = np.cumsum(sorted_weights * sorted_members, axis=-1)[..., last_of_run]
    fp = np.cumsum(sorted_weights * ~sorted_members, axis=-1)[..., last_of_run]
    start = np.zeros((*tp.shape[:-1], 1))
    return Roc(
        fpr=np.concatenate([start, fp / negatives], axis=-1),
        tpr=np.concatenate([start, tp / positives], axis=-1),
        thresholds=np.r_[np.inf, sorted_scores[last_of_run]],
        false_positives=np.concatenate([start, fp], axis=-1).astype(np.int64),
    )
