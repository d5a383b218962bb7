"""Keep matrices: bool [M, N], True where model m trains on pool record n."""

from __future__ import annotations

import numpy as np

from miakit.errors import MiakitError


def balanced_keep(num_models: int, num_records: int, rng: np.random.Generator) -> np.ndarray:
    """Every record IN for exactly M/2 models, chosen at random (LiRA's argsort construction)."""
    if num_models < 2 or num_models % 2:
        raise MiakitError(
            f"split.num_models: the balanced split needs an even number of models (>= 2), "
            f"got {num_models}"
        )
    order = rng.random((num_models, num_records)).argsort(axis=0)
    return order < num_models // 2
