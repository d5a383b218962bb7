"""Synthetic inputs with known structure, built independently of miakit's own code."""

import numpy as np


def balanced_keep_matrix(num_models: int, num_records: int, seed: int = 0) -> np.ndarray:
    """Each record IN for exactly half the models (written here independently of miakit's split)."""
    rng = np.random.default_rng(seed)
    keep = np.zeros((num_models, num_records), dtype=bool)
    for n in range(num_records):
        keep[rng.choice(num_models, num_models // 2, replace=False), n] = True
    return keep


def binary_logits_from_log_odds(phi: np.ndarray) -> np.ndarray:
    """Logits [..., 2] with label 1 whose LiRA signal log p_1 − log p_0 is exactly `phi`."""
    return np.stack([np.zeros_like(phi), phi], axis=-1)
