"""The pool: the N records an audit is about, plus optional held-out test records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miakit.store import array_hash, content_hash


@dataclass(frozen=True)
class Pool:
    """Features float32 [N, D] (or uint8 images [N, H, W, C]), labels int64 [N] in [0, classes)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{self.name}: {len(self.x)} records but {len(self.y)} labels")
        if self.y.min() < 0 or self.y.max() >= self.num_classes:
            raise ValueError(f"{self.name}: labels must lie in [0, {self.num_classes})")

    @property
    def num_records(self) -> int:
        return len(self.y)

    def fingerprint(self) -> str:
        """Content hash of the pool's records and labels: a model trained on other data is stale."""
        return content_hash([array_hash(self.x), array_hash(self.y), self.num_classes])
