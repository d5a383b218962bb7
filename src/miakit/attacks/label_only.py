"""Label-only attacks (Choquette-Choo et al., "Label-Only Membership Inference Attacks", ICML 2021).

They read nothing but the class the target predicts (the argmax of its outputs under any
`query.output`), so they run on every output restriction, `label` included, and need no reference
model.

- `gap`: the gap attack (their baseline, after Yeom et al. 2018): member when the target labels
  the record as it is (view `identity_view(A)`) correctly; score 1 or 0.
- `label-augmentation`: the data-augmentation attack: score = the share of the A query views
  (flips × shifts, `query.augmentations` 2, 18 or 50; the paper queries flips and shifts of up to
  d pixels) that the target labels correctly. The paper also feeds the vector of per-view
  outcomes to a learned attack model trained on shadow models; this is its unweighted count, the
  form that needs no shadow model. With one view it is the gap attack, so it is skipped there.

Ties: the argmax picks the first of tied classes (`numpy.argmax`), as `query.output: label` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from miakit.attacks.base import Attack, register
from miakit.signals import Signals
from miakit.views import SHIFTS, identity_view


def correct_labels(signals: Signals, target: int) -> np.ndarray:
    """Whether the target's predicted class equals the label, bool [N, A] (per record and view)."""
    predicted = np.concatenate(
        [
            np.argmax(signals.read_logits([target], chunk)[0], axis=-1)
            for chunk in signals.record_chunks(1)
        ]
    )
    return predicted == signals.labels[:, None]


@register
class Gap(Attack):
    """Gap attack (Choquette-Choo et al. 2021): 1 where the target labels the record correctly.

    Reads the predicted class only (after Yeom et al. 2018's baseline)."""

    name = "gap"
    output_needs = "labels"

    def unavailable(self, signals: Signals) -> str | None:
        if signals.num_augmentations not in SHIFTS:
            return (
                f"gap needs the record as it is among the query views, but logits with "
                f"A={signals.num_augmentations} views follow none of miakit's layouts (A in "
                f"{sorted(SHIFTS)})"
            )
        return super().unavailable(signals)

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        view = identity_view(signals.num_augmentations)
        return correct_labels(signals, target)[:, view].astype(np.float64)


@register
class LabelAugmentation(Attack):
    """Augmentation attack (Choquette-Choo et al. 2021): share of query views labelled correctly.

    Reads the predicted class only, of each of the A views (flips × shifts)."""

    name = "label-augmentation"
    output_needs = "labels"

    def unavailable(self, signals: Signals) -> str | None:
        if signals.num_augmentations == 1:
            return (
                "label-augmentation needs query augmentations (query.augmentations 2, 18 or 50 "
                "on images); with the one view it is the gap attack"
            )
        return super().unavailable(signals)

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        return correct_labels(signals, target).mean(axis=-1)
