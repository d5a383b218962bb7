"""Exposure of planted secrets (Carlini, Liu, Erlingsson, Kos and Song, USENIX Security 2019,
"The Secret Sharer: Evaluating and Testing Unintended Memorization in Neural Networks",
Definition 3): a canary s[r] drawn from a randomness space R has rank(s[r]) = its position among
the texts of R sorted by the model's log-perplexity, and exposure = log2 |R| − log2 rank, from 0
(no better than any alternative) to log2 |R| (the most likely of all).

With m canaries of one format, each canary is ranked among its own secret and the A = 10^d − m
secrets no canary holds (the other canaries, themselves perhaps members, are no alternatives), so
|R| counts A + 1 candidates. Two ways to the rank:

- `exposure`, exact: R enumerated, every alternative scored. Ties count against the canary
  (rank = 1 + the alternatives at most as perplexing): exposure is never overstated.
- `estimated_exposure`, for spaces too large to enumerate: the paper's extrapolation (Section 4.3,
  approximating exposure by a fitted distribution). Exposure is −log2 of the share of R at most
  as perplexing as the canary, and the log-perplexities of the alternatives are close to a
  skew-normal, so a skew-normal fitted to those of n alternatives sampled uniformly (maximum
  likelihood, scipy.stats.skewnorm.fit) gives that share as its CDF F at the canary's
  log-perplexity x. Here rank ≈ 1 + A·F(x), the exact rank's expectation were F the
  alternatives' own CDF, so exposure ≈ log2 (A + 1) − log2 (1 + A·F(x)): the paper's −log2 F(x)
  to within log2 (1 + 1/A) wherever A·F(x) ≫ 1, and, like the exact exposure, at most log2 |R|
  (the paper's figure grows without bound past it, to infinity where F underflows).

The estimate is the fitted shape's, not a count: past the sample's reach (about log2 n bits) it is
the skew-normal's tail. Where the alternatives' log-perplexities have a lighter low tail than a
skew-normal (a sum of a few per-digit costs, bounded below), it understates exposure.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from miakit.config import MIN_SECRET_SAMPLES
from miakit.errors import MiakitError


def exposure(log_perplexity: np.ndarray, secrets: np.ndarray) -> np.ndarray:
    """Exposure in bits, float64 [m], of the canaries holding `secrets` (int [m], distinct
    indices into R) under one model whose log-perplexity of every text of R is
    `log_perplexity` (float [|R|]; `miakit.query.log_perplexity`). MiakitError on repeated or
    out-of-range secrets, or on no alternatives."""
    values = np.asarray(log_perplexity, dtype=np.float64)
    secrets = np.asarray(secrets, dtype=np.int64)
    if secrets.size and (secrets.min() < 0 or secrets.max() >= len(values)):
        raise MiakitError(f"exposure: secrets must index the {len(values)} texts of R")
    if len(np.unique(secrets)) != len(secrets):
        raise MiakitError("exposure: the canaries' secrets must be distinct")
    alternatives = np.ones(len(values), dtype=bool)
    alternatives[secrets] = False
    if not alternatives.any():
        raise MiakitError("exposure: every secret of R is a canary; nothing to rank against")
    ordered = np.sort(values[alternatives])
    rank = 1 + np.searchsorted(ordered, values[secrets], side="right")
    return np.log2(len(ordered) + 1) - np.log2(rank)


def estimated_exposure(
    canaries: np.ndarray, sample: np.ndarray, alternatives: int
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Exposure in bits, float64 [m], of canaries whose log-perplexities are `canaries`
    (float [m]) among `alternatives` (A) alternatives, estimated from the log-perplexities
    `sample` (float [n]) of n of them drawn uniformly without replacement: log2 (A + 1) −
    log2 (1 + A·F(x)), F the CDF of the skew-normal fitted to `sample` (see the module's text).
    Also returns the fit: (shape a, location, scale) in scipy.stats.skewnorm's terms.
    MiakitError on fewer than MIN_SECRET_SAMPLES or more than A sampled values, on a sample of one
    value, or on non-finite log-perplexities."""
    canaries = np.asarray(canaries, dtype=np.float64)
    sample = np.asarray(sample, dtype=np.float64)
    if not MIN_SECRET_SAMPLES <= len(sample) <= alternatives:
        raise MiakitError(
            f"exposure: {len(sample)} sampled alternatives; a skew-normal fit needs at least "
            f"{MIN_SECRET_SAMPLES}, and there are {alternatives} alternatives to sample"
        )
    if not (np.isfinite(canaries).all() and np.isfinite(sample).all()):
        raise MiakitError("exposure: the log-perplexities must be finite")
    if np.ptp(sample) == 0:
        raise MiakitError("exposure: every sampled alternative has one log-perplexity; no fit")
    shape, loc, scale = (float(v) for v in stats.skewnorm.fit(sample))
    share = stats.skewnorm.cdf(canaries, shape, loc, scale)
    return np.log2(alternatives + 1.0) - np.log2(1.0 + alternatives * share), (shape, loc, scale)
