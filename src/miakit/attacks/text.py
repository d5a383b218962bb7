"""Reference-free attacks on causal language models, from the target's per-token outputs.

Each reads `Signals.tokens` (`TokenSignals`: the target's log p of every actual next token, and
the mean μ and standard deviation σ of log p over its next-token distribution, NaN at PAD
targets) and scores a text record, higher = more likely member:

- `lm-loss` (Yeom et al. 2018 on LMs; MIMIR's LOSS): the mean token log-probability, −NLL.
- `zlib` (Carlini et al., USENIX Security 2021, "Extracting training data from large language
  models"): −NLL / zlib, with NLL the mean token NLL in nats and zlib the record's
  zlib-compressed length in bytes (as their code's log-perplexity / zlib entropy).
- `lowercase` (Carlini et al. 2021): −NLL / NLL_lower, the mean token NLL of the record over
  that of the record with its ASCII letters lowercased (their code's ratio of log-perplexities;
  Python's bytes.lower(), so the tokens stay aligned).
- `min-k` (Shi et al., ICLR 2024, Min-K% Prob): the mean of the lowest k% of the token
  log-probabilities (k = 20%), over max(1, ⌊k · n⌋) of a record's n tokens as MIMIR's code.
- `min-k-plus-plus` (Zhang et al. 2024, Min-K%++): the same mean over the lowest k% of
  (log p(x_t) − μ_t) / σ_t (k = 20%); a token whose next-token distribution has σ_t = 0 (all
  mass on one token) counts as 0.

- `lm-ratio` (Carlini et al. 2021, "comparing to other neural language models"; Mireshghallah
  et al. 2022, reference-based likelihood ratio): the target's mean token log-probability minus
  that of a reference LM, the hf target's pretrained base model (`miakit.reference_lm`).

ReCaLL is in `miakit.attacks.recall`. The sequence-level attacks over references (LiRA, RMIA)
read the logits' two-class view of the mean token probability instead
(`miakit.tokens.sequence_logits`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from miakit.attacks.base import Attack, AttackConfig, register
from miakit.signals import Signals


class TextAttack(Attack):
    """An attack that reads the target's per-token outputs (`Signals.tokens`)."""

    needs_tokens: ClassVar[bool] = True
    token_stats: ClassVar[tuple[str, ...]] = ("logprobs",)

    def unavailable(self, signals: Signals) -> str | None:
        """Also: the signals lack one of `token_stats` (arrays given without it)."""
        reason = super().unavailable(signals)
        if reason is None:
            missing = [n for n in self.token_stats if getattr(signals.tokens, n) is None]
            if missing:
                return f"{self.name} reads the per-token {missing[0]}, which these signals lack"
        return reason

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        assert signals.tokens is not None  # unavailable() says why otherwise
        return self.token_score(signals, target)

    @abstractmethod
    def token_score(self, signals: Signals, target: int) -> np.ndarray:
        """Scores [N] of the target's records."""


def mean_token_logprob(logprobs: np.ndarray) -> np.ndarray:
    """Mean of each row's finite values [n, T] → [n] (NaN marks PAD targets)."""
    return np.nanmean(logprobs, axis=1)


def lowest_fraction_mean(values: np.ndarray, k: float) -> np.ndarray:
    """Mean of the lowest max(1, ⌊k · n⌋) of each row's n finite values, [n, T] → [n]."""
    counts = np.isfinite(values).sum(axis=1)
    take = np.maximum(1, np.floor(k * counts + 1e-9).astype(np.int64))
    ordered = np.sort(values, axis=1)  # NaN sorts last
    prefix = np.cumsum(np.where(np.isfinite(ordered), ordered, 0.0), axis=1)
    return np.take_along_axis(prefix, (take - 1)[:, None], axis=1)[:, 0] / take


@register
class LmLossAttack(TextAttack):
    """Score = the target's mean token log-probability of the record (−mean token NLL)."""

    name = "lm-loss"

    def token_score(self, signals: Signals, target: int) -> np.ndarray:
        assert signals.tokens is not None
        return mean_token_logprob(signals.tokens.read("logprobs", target))


@register
class ZlibAttack(TextAttack):
    """Score = −(mean token NLL in nats) / (zlib-compressed length of the text in bytes)."""

    name = "zlib"
    token_stats = ("logprobs", "zlib_bytes")

    def token_score(self, signals: Signals, target: int) -> np.ndarray:
        assert signals.tokens is not None
        nll = -mean_token_logprob(signals.tokens.read("logprobs", target))
        return -nll / signals.tokens.zlib_bytes


@register
class LowercaseAttack(TextAttack):
    """Score = −(mean token NLL) / (mean token NLL of the lowercased record)."""

    name = "lowercase"
    token_stats = ("logprobs", "logprobs_lower")

    def token_score(self, signals: Signals, target: int) -> np.ndarray:
        assert signals.tokens is not None
        nll = -mean_token_logprob(signals.tokens.read("logprobs", target))
        nll_lower = -mean_token_logprob(signals.tokens.read("logprobs_lower", target))
        return -nll / nll_lower


class MinKConfig(AttackConfig):
    k: float = Field(
        0.2, gt=0, le=1, description="fraction of a record's tokens averaged, the lowest first"
    )


@register
class MinKAttack(TextAttack):
    """Score = mean of the lowest k% token log-probabilities (Shi et al. 2024)."""

    name = "min-k"
    Config = MinKConfig

    def token_score(self, signals: Signals, target: int) -> np.ndarray:
        assert signals.tokens is not None
        return lowest_fraction_mean(signals.tokens.read("logprobs", target), self.config.k)


@register
class MinKPlusPlusAttack(TextAttack):
    """Score = mean of the lowest k% of (log p(x_t) − μ_t) / σ_t (Zhang et al. 2024)."""

    name = "min-k-plus-plus"
    token_stats = ("logprobs", "mu", "sigma")
    Config = MinKConfig

    def token_score(self, signals: Signals, target: int) -> np.ndarray:
        tokens = signals.tokens
        assert tokens is not None
        logp, mu, sigma = (tokens.read(n, target) for n in ("logprobs", "mu", "sigma"))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(sigma > 0, (logp - mu) / sigma, np.where(np.isfinite(logp), 0.0, np.nan))
        return lowest_fraction_mean(z, self.config.k)


@register
class LmRatioAttack(TextAttack):
    """Score = mean token log p_target(x) − mean token log p_reference(x), the reference LM the
    hf target's base model before fine-tuning (Carlini et al. 2021; Mireshghallah et al. 2022)."""

    name = "lm-ratio"
    token_stats = ("logprobs", "reference_logprobs")
    needs_reference_lm = True

    def unavailable(self, signals: Signals) -> str | None:
        if signals.tokens is not None and signals.tokens.reference_logprobs is None:
            return "lm-ratio needs a reference LM: the base model of an hf causal-lm target"
        return super().unavailable(signals)

    def token_score(self, signals: Signals, target: int) -> np.ndarray:
        tokens = signals.tokens
        assert tokens is not None and tokens.reference_logprobs is not None
        target_mean = mean_token_logprob(tokens.read("logprobs", target))
        return target_mean - mean_token_logprob(np.asarray(tokens.reference_logprobs, np.float64))
