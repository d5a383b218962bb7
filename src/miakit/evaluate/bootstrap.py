"""Bootstrap intervals for model-level figures: at FPR 0.1% a TPR rests on a handful of records,
so the spread over targets alone hides how much it would move on other data.

A resample is drawn as multiplicities (how often each record is drawn), so the scores are sorted
once per target and every resample's ROC is a weighted cumulative sum: fast enough for 200
resamples of 64 targets on every evaluate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
BLOCK = 50  # resamples evaluated at once: bounds memory to a few [BLOCK, N] arrays

#: figures(scores [N], members [N], weights [B, N]) → name → values [B]
Figures = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]


def stratified_weights(members: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicities [resamples, N] of records drawn with replacement within members and within
    non-members, so each resample keeps both class sizes (a ROC needs both)."""
    n = len(members)
    drawn = [
        group[rng.integers(0, len(group), (resamples, len(group)))]
        for group in (np.flatnonzero(members), np.flatnonzero(~members))
    ]
    flat = (np.concatenate(drawn, axis=1) + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def bootstrap_mean_intervals(
    figures: Figures,
    scores: np.ndarray,
    keep: np.ndarray,
    targets: Sequence[int],
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> dict[str, tuple[float, float]]:
    """Percentile interval of each figure's mean over targets, records resampled per target;
    scores [T, N], row i belonging to model targets[i]."""
    rng = np.random.default_rng(seed)
    per_target: list[dict[str, np.ndarray]] = []
    for i, t in enumerate(targets):
        blocks = [
            figures(scores[i], keep[t], stratified_weights(keep[t], min(BLOCK, resamples - b), rng))
            for b in range(0, resamples, BLOCK)
        ]
        per_target.append({name: np.concatenate([f[name] for f in blocks]) for name in blocks[0]})
    tail = 100 * (1 - confidence) / 2
    intervals = {}
    for name in per_target[0]:
        means = np.mean([f[name] for f in per_target], axis=0)
        intervals[name] = (
            float(np.percentile(means, tail)),
            float(np.percentile(means, 100 - tail)),
        )
    return intervals
