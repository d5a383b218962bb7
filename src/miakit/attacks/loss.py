"""LOSS attack (Yeom et al., CSF 2018): members have lower loss under the target model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from miakit.attacks.base import Attack, register
from miakit.signals import Signals


@register
class LossAttack(Attack):
    """Score = −(cross-entropy loss of the target), averaged over query augmentations."""

    name = "loss"

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        return -signals.signal("loss", [target])[0].mean(axis=-1)
