"""Exposure of planted secrets (Carlini, Liu, Erlingsson, Kos and Song, USENIX Security 2019,
"The Secret Sharer: Evaluating and Testing Unintended Memorization in Neural Networks",
Definition 3): a canary s[r] drawn from a randomness space R has rank(s[r]) = its position among
the texts of R sorted by the model's log-perplexity, and exposure = log2 |R| − log2 rank, from 0
(no better than any alternative) to log2 |R| (the most likely of all).

Here the rank is computed exactly, by enumerating R (the paper's Section 4's enumeration; its
extrapolation from a distribution fitted to sampled alternatives, for spaces too large to
enumerate, is not implemented: dp_audit.canaries.secret_digits is at most 4). With m canaries of
one format, each canary is ranked among its own secret and the secrets no canary holds (the other
canaries, themselves perhaps members, are no alternatives), so |R| counts those, 10^d − m + 1.
Ties count against the canary (rank = how many candidates are at most as perplexing): exposure
is never overstated.
"""

from __future__ import annotations

import numpy as np

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
