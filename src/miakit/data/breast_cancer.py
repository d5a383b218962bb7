"""scikit-learn's breast cancer data (Wisconsin diagnostic): 569 records of 30 features, two
classes, shipped inside scikit-learn, so no download is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from miakit.data.pool import Pool


def load_breast_cancer_pool(data_dir: Path | None = None) -> Pool:
    """All 569 records as the pool: the 30 features as distributed (float32, unscaled: their
    ranges differ by four orders of magnitude, so scale-sensitive models want
    model.standardize), labels 0 malignant, 1 benign."""
    from sklearn.datasets import load_breast_cancer  # listing data sets must not import sklearn

    bunch = load_breast_cancer()
    return Pool(
        name="breast-cancer",
        x=bunch.data.astype(np.float32),
        y=bunch.target.astype(np.int64),
        num_classes=2,
        class_names=tuple(str(n) for n in bunch.target_names),
    )
