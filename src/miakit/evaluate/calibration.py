"""Calibration and overconfidence of a model, and attacks' false positives on out-of-distribution
records: overconfident models leak membership through confidence, and an attack that calls records
no model ever saw "member" is measuring distribution shift, not membership.

ECE (Guo et al. 2017): confidence = the top softmax probability, 15 equal-width bins on (0, 1],
ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|. Overconfidence error (Thulasidasan et al. 2019):
OE = Σ_b (n_b / N) · confidence_b · max(confidence_b − accuracy_b, 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from miakit.errors import MiakitError
from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.roc import roc_curve

BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Per bin: mean confidence, accuracy and count (bins without records hold NaN and 0)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray

    def _weights(self) -> np.ndarray:
        return self.counts / self.counts.sum()

    def ece(self) -> float:
        gap = np.abs(self.accuracy - self.confidence)
        return float(np.nansum(self._weights() * gap))

    def overconfidence(self) -> float:
        gap = np.clip(self.confidence - self.accuracy, 0, None)
        return float(np.nansum(self._weights() * self.confidence * gap))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> Reliability:
    """Reliability diagram data of class probabilities [N, C] against integer labels [N]."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels) or len(probs) == 0:
        raise MiakitError(
            f"reliability needs probabilities [N, C] and labels [N], got {probs.shape} and "
            f"{np.shape(labels)}"
        )
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    # bin b holds confidences in (b/bins, (b+1)/bins]
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=bins) / counts
        accuracy = np.bincount(which, correct, minlength=bins) / counts
    return Reliability(np.linspace(0, 1, bins + 1), mean_conf, accuracy, counts)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean())


def ood_false_positive_rates(
    ood_scores: np.ndarray,
    scores: np.ndarray,
    keep: np.ndarray,
    targets: Sequence[int],
    fprs: Sequence[float],
) -> dict[str, list[float]]:
    """Per target, the share of out-of-distribution records [T, K] an attack calls member at the
    threshold calibrated on in-distribution records for each FPR: ood_fpr@fpr=x → [T] values."""
    out: dict[str, list[float]] = {str(MetricKey("ood_fpr", fpr=x)): [] for x in fprs}
    for i, t in enumerate(targets):
        roc = roc_curve(scores[i], keep[t])
        for x in fprs:
            out[str(MetricKey("ood_fpr", fpr=x))].append(
                float((ood_scores[i] >= roc.threshold_at_fpr(x)).mean())
            )
    return out
