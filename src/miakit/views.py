"""The query views' order along the augmentation axis A, without torch (`miakit.query` takes them).

A ∈ {1, 2, 18, 50}, in the LiRA reference code's order: for each of (the image, its horizontal
flip), every crop at offset (dy, dx) of the image reflect-padded by s pixels, dy outer. A = 1 is the
record as it is; 2 adds the flip (s = 0); 18 and 50 are s = 1 and 2.
"""

from __future__ import annotations

SHIFTS = {1: None, 2: 0, 18: 1, 50: 2}  # A → reflect shift s (None: no flip either)


def identity_view(augmentations: int) -> int:
    """Index along A of the record as it is (s·(2s + 1) + s: the centre crop of the unflipped)."""
    shift = SHIFTS[augmentations] or 0
    return shift * (2 * shift + 1) + shift
