"""ROC curves and the figures read off them, on (scores, membership) arrays alone.

Conventions (DESIGN.md): the full ROC with one point per distinct score (ties move together, no
points dropped, no interpolation); TPR at FPR x = the largest TPR whose FPR ≤ x; AUC by the
trapezoid rule; balanced accuracy = max over thresholds of 1 − (FPR + FNR)/2.

The operating-point rule, the one every figure, threshold, interval and count uses: a threshold τ
calls member every record whose score is ≥ τ, and τ is one of the scores (or +inf: call none), so
records tied at τ are called together, never split by their order or index, and `score ≥ τ`
reproduces the point's true- and false-positive counts. Of the points with at most k false
positives, the operating point is the one with the most true positives and, among those, the
fewest false positives (the highest τ): on scores with few values (label-only attacks, rounded
outputs, trees) a staircase of few vertices, and the figure is read at one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miakit.errors import MiakitError


@dataclass(frozen=True)
class Roc:
    """Points ordered by decreasing threshold, starting at (0, 0): predict member iff score ≥
    threshold. fpr, tpr, thresholds, false_positives and true_positives are [P]."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    false_positives: np.ndarray
    true_positives: np.ndarray

    @property
    def members(self) -> int:
        return int(self.true_positives[-1])

    @property
    def non_members(self) -> int:
        return int(self.false_positives[-1])

    def auc(self) -> float:
        return float(np.trapezoid(self.tpr, self.fpr))

    def point_within(self, max_false_positives: int) -> int:
        """Index of the operating point with at most `max_false_positives` false positives (the
        module's rule: most true positives, then fewest false positives)."""
        return self._best(self.false_positives <= max_false_positives)

    def point_at_fpr(self, max_fpr: float) -> int:
        """Index of the point with the largest TPR whose FPR ≤ max_fpr; of several with that TPR,
        the one with the fewest false positives (the highest threshold)."""
        return self._best(self.fpr <= max_fpr)

    def _best(self, allowed: np.ndarray) -> int:
        # the first point (call none) is always allowed; TPR rises along the points, so the
        # first point reaching the largest allowed TPR has the fewest false positives
        counts = np.where(allowed, self.true_positives, -1)
        return int(np.argmax(counts == counts.max()))

    def tpr_at_fpr(self, max_fpr: float) -> float:
        return float(self.tpr[self.point_at_fpr(max_fpr)])

    def threshold_at_fpr(self, max_fpr: float) -> float:
        """τ behind tpr_at_fpr of one curve: predict member iff score ≥ τ (inf: predict none)."""
        return float(self.thresholds[self.point_at_fpr(max_fpr)])

    def false_positives_at_fpr(self, max_fpr: float) -> int:
        """How many non-members tpr_at_fpr rests on: at FPR 0.1% often a handful."""
        return int(self.false_positives[self.point_at_fpr(max_fpr)])

    def first_catch(self) -> int:
        """Index of the first point that calls a member (the lowest FPR at which members are
        caught); every ROC has one, its last point calling every record."""
        return int(np.argmax(self.true_positives > 0))

    def balanced_accuracy(self) -> float:
        return float((1 + self.tpr - self.fpr).max() / 2)


def roc_curve(scores: np.ndarray, members: np.ndarray) -> Roc:
    """The ROC of (scores, members), both [N]. Raises MiakitError for arrays of other shapes,
    NaN scores, or no members or no non-members."""
    scores = np.asarray(scores, dtype=np.float64)
    members = np.asarray(members, dtype=bool)
    if scores.shape != members.shape or scores.ndim != 1:
        raise MiakitError(
            f"scores and membership must be 1-D arrays of one length, got {scores.shape} "
            f"and {members.shape}"
        )
    if np.isnan(scores).any():
        raise MiakitError("scores hold NaN: an attack produced no score for some records")
    positives, negatives = int(members.sum()), int((~members).sum())
    if positives == 0 or negatives == 0:
        raise MiakitError(
            f"a ROC needs members and non-members, got {positives} members and {negatives} others"
        )
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_members = scores[order], members[order]
    # the last index of each run of equal scores: all records tied at a threshold flip together
    # (compared, not differenced: two infinite scores are tied too)
    last_of_run = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), len(scores) - 1]
    tp = np.r_[0, np.cumsum(sorted_members)[last_of_run]]
    fp = np.r_[0, np.cumsum(~sorted_members)[last_of_run]]
    return Roc(
        fpr=fp / negatives,
        tpr=tp / positives,
        thresholds=np.r_[np.inf, sorted_scores[last_of_run]],
        false_positives=fp,
        true_positives=tp,
    )
