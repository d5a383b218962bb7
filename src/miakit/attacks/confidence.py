"""Confidence-based attacks on the target's output alone (no reference models).

- `confidence`: the largest softmax probability (Salem et al., NDSS 2019; the MMPS study).
- `entropy`: minus the prediction entropy; members get confident, low-entropy outputs.
- `modified-entropy`: minus Song & Mittal's Mentr (USENIX Security 2021), which also uses the label:
  it grows when the true class is unlikely and when another class is confidently predicted.

Each is averaged over query augmentations. The top-k sorted probabilities used as features by the
learned attacks are `miakit.signals.sorted_probs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from miakit.attacks.base import Attack, register
from miakit.signals import SignalKind, Signals


class SignalAttack(Attack):
    """Score = sign · (a transform of the target's logits), averaged over augmentations."""

    kind: ClassVar[SignalKind]
    sign: ClassVar[float]

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        return self.sign * signals.signal(self.kind, [target])[0].mean(axis=-1)


@register
class Confidence(SignalAttack):
    name = "confidence"
    kind = "max_prob"
    sign = 1.0


@register
class Entropy(SignalAttack):
    name = "entropy"
    kind = "entropy"
    sign = -1.0


@register
class ModifiedEntropy(SignalAttack):
    name = "modified-entropy"
    kind = "modified_entropy"
    sign = -1.0
