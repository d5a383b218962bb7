"""Random signals for the attack tests, and direct per-value formulas to check them against."""

import math

import numpy as np

from miakit.attacks import ATTACKS
from miakit.signals import Signals, TokenSignals

from .synthetic import balanced_keep_matrix

#: The attacks that read models' logits (and traces or features); those reading a language
#: model's per-token outputs (`Attack.needs_tokens`) have their own tests (tests/test_text*.py).
LOGIT_ATTACKS = [name for name, cls in ATTACKS.items() if not cls.needs_tokens]


def random_signals(models=6, records=40, augmentations=1, classes=4, seed=0, member_boost=1.5):
    """Logits whose true-class logit is `member_boost` higher where the model trained on the record."""
    rng = np.random.default_rng(seed)
    keep = balanced_keep_matrix(models, records, seed)
    labels = rng.integers(0, classes, records)
    logits = rng.normal(0, 2, (models, records, augmentations, classes))
    boost = np.where(keep, member_boost, 0.0)[..., None]
    logits[np.arange(models)[:, None], np.arange(records)[None, :], :, labels[None, :]] += boost
    return Signals.from_arrays(logits, labels, keep), logits, labels, keep


def random_token_signals(seed=0, models=3, records=6, length=8, recall=False):
    """Signals of random per-token outputs (a causal LM's, `TokenSignals`; with a ReCaLL
    statistic where `recall`), each record with its own count of real tokens, NaN after them;
    model 0 trains on the first half of the records, the others on none. One token's sigma is
    0 (a distribution with all its mass on one token). Returns (signals with the token outputs,
    the TokenSignals, the real token counts int [records])."""
    draw = np.random.default_rng(seed)
    real = draw.integers(1, length + 1, size=records)
    mask = np.arange(length)[None, :] < real[:, None]

    def stat(low, high):
        return [
            np.where(mask, draw.uniform(low, high, (records, length)), np.nan)
            for _ in range(models)
        ]

    logprobs, mu, sigma, lower = stat(-9, -0.01), stat(-4, -0.5), stat(0.1, 3), stat(-9, -0.01)
    sigma[0][0, 0] = 0.0
    conditional = stat(-12, -0.01) if recall else None
    zlib_sizes = draw.integers(5, 40, size=records)
    keep = np.zeros((models, records), dtype=bool)
    keep[0, : records // 2] = True
    two_class = [np.zeros((records, 1, 2)) for _ in range(models)]
    tok = TokenSignals(logprobs, mu, sigma, lower, zlib_sizes, conditional)
    signals = Signals(two_class, np.zeros(records, dtype=np.int64), keep, tokens=tok)
    return signals, tok, real


def direct_softmax(z):
    """Softmax of one logit vector by the textbook formula (shifted by the max)."""
    top = max(z)
    e = [math.exp(v - top) for v in z]
    return [v / sum(e) for v in e]


def nan_signals(signals: Signals, model: int, record: int) -> Signals:
    """The same signals with one NaN logit."""
    logits = np.stack([np.array(x, dtype=np.float64) for x in signals.logits])
    logits[model, record, 0, 0] = np.nan
    return Signals.from_arrays(logits, signals.labels, signals.keep)


def chosen_references(keep, record, target, design, sides, counts="equal"):
    """The references `target` fits on at `record`, per side ("IN": trained on it, "OUT": not),
    in model order: every model of `design` (the reference models) but the target, or, with
    counts "equal", the first k of them on each side, k = the smaller of its IN and OUT counts
    (reading OUT alone, for a target outside `design`: all its OUT ones)."""
    refs = [m for m in design if m != target]
    side = {
        "IN": [m for m in refs if keep[m, record]],
        "OUT": [m for m in refs if not keep[m, record]],
    }
    if counts == "all" or (tuple(sides) == ("OUT",) and target not in design):
        return side
    k = min(len(side["IN"]), len(side["OUT"]))
    return {s: members[:k] for s, members in side.items()}
