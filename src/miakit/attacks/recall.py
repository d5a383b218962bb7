"""ReCaLL (Xie et al., EMNLP 2024, "ReCaLL: Membership Inference via Relative Conditional
Log-Likelihoods"; their code, github.com/ruoyuxie/recall, and MIMIR's `attacks/recall.py`).

A prefix P of texts no model trained on (query.recall_prefix) is laid before each record, and
the score is the ratio of the record's mean token log-likelihood with the prefix to that
without it, LL(x | P) / LL(x), both means over the record's real next tokens (EOS included).
Both log-likelihoods are negative, so the ratio is NLL(x | P) / NLL(x): the paper finds that a
non-member prefix lowers a member's log-likelihood more than a non-member's, so a higher ratio
means more likely member (MIMIR returns its negative, as it ranks lower scores as members).
"""

from __future__ import annotations

import numpy as np

from miakit.attacks.base import register
from miakit.attacks.text import TextAttack, mean_token_logprob
from miakit.signals import Signals


@register
class RecallAttack(TextAttack):
    """Score = LL(x | P) / LL(x): mean token log-prob with the non-member prefix over without."""

    name = "recall"
    token_stats = ("logprobs", "logprobs_recall")

    def unavailable(self, signals: Signals) -> str | None:
        if signals.tokens is not None and signals.tokens.logprobs_recall is None:
            return (
                "recall needs each record's log-probs with a non-member prefix before it, which "
                "the query writes with query.recall_prefix"
            )
        return super().unavailable(signals)

    def token_score(self, signals: Signals, target: int) -> np.ndarray:
        tokens = signals.tokens
        assert tokens is not None
        conditional = mean_token_logprob(tokens.read("logprobs_recall", target))
        return conditional / mean_token_logprob(tokens.read("logprobs", target))
