"""scikit-learn's digits: 1,797 8×8 images shipped inside scikit-learn, so no download is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from miakit.data.pool import Pool


def load_digits_pool(data_dir: Path | None = None) -> Pool:
    """All 1,797 records as the pool; the 64 pixel intensities (0..16) scaled to [0, 1]."""
    from sklearn.datasets import load_digits  # here: listing data sets must not import sklearn

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    return Pool(
        name="digits", x=x, y=bunch.target.astype(np.int64), num_classes=10, picture_shape=(8, 8)
    )
