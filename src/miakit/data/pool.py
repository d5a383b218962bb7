"""The pool: the N records an audit is about, plus optional held-out test records."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from miakit.store import array_hash, content_hash


@dataclass(frozen=True)
class Pool:
    """Features float32 [N, D] (or uint8 images [N, H, W, C]), labels int64 [N] in [0, classes).

    Images carry fixed, published per-channel `mean` and `std` (on the 0..1 scale): a model
    normalizes with them, never with statistics of records it did not train on.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] = ()
    #: Feature records that are pictures (digits: 8×8 grey intensities in [0, 1]), so that a
    #: report can draw them: (height, width) of the picture the D features fill row by row.
    picture_shape: tuple[int, int] | None = None
    #: Text records (`miakit.data.text`): x holds token ids int64 [N, L] of `miakit.tokens`
    #: (PAD after each record's EOS) and this is the tokenizer's vocabulary size; None otherwise.
    vocab_size: int | None = None
    #: Records tokenized by a Hugging Face model folder's tokenizer (`miakit.data.text.load_hf_text`):
    #: the content hash of its files (part of the fingerprint) and its padding id; None otherwise.
    tokenizer: str | None = None
    pad_id: int | None = None
    #: With such a tokenizer and a causal LM: the records' texts (zlib, the report) and the token
    #: ids of the records lowercased [N, L] (`lowercase`; own lengths, padded with pad_id).
    texts: tuple[str, ...] | None = None
    x_lower: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{self.name}: {len(self.x)} records but {len(self.y)} labels")
        if self.y.min() < 0 or self.y.max() >= self.num_classes:
            raise ValueError(f"{self.name}: labels must lie in [0, {self.num_classes})")
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"{self.name}: give both mean and std, or neither")
        if self.mean is not None and len(self.mean) != self.x.shape[-1]:
            raise ValueError(f"{self.name}: one mean per channel ({self.x.shape[-1]}) expected")

    @property
    def num_records(self) -> int:
        return len(self.y)

    @property
    def is_image(self) -> bool:
        """uint8 images [N, H, W, C]; everything else is a float32 feature matrix."""
        return self.x.ndim == 4 and self.x.dtype == np.uint8

    @property
    def is_text(self) -> bool:
        """Token ids [N, L] of text records (`vocab_size` set)."""
        return self.vocab_size is not None

    def pictures(self) -> np.ndarray | None:
        """The records as uint8 pictures [N, H, W, C] (images as they are; features with a
        picture_shape scaled from [0, 1]), or None for records that are no pictures."""
        if self.is_image:
            return self.x
        if self.picture_shape is None:
            return None
        scaled = np.clip(self.x, 0.0, 1.0) * 255.0 + 0.5
        return scaled.astype(np.uint8).reshape(len(self.x), *self.picture_shape, 1)

    def take(self, indices: np.ndarray) -> Pool:
        """The pool restricted to `indices` (in that order); the test split is kept whole."""
        extra: dict = {}
        if self.texts is not None:
            extra["texts"] = tuple(self.texts[i] for i in indices)
        if self.x_lower is not None:
            extra["x_lower"] = self.x_lower[indices]
        return replace(self, x=self.x[indices], y=self.y[indices], **extra)

    def fingerprint(self) -> str:
        """Content hash of the pool's records and labels: a model trained on other data is stale."""
        parts: list[object] = [array_hash(self.x), array_hash(self.y), self.num_classes]
        if self.mean is not None:
            parts.append([list(self.mean), list(self.std or ())])
        if self.vocab_size is not None:
            from miakit import tokens

            parts.append({"vocab_size": self.vocab_size, "tokenizer": tokens.REVISION})
        if self.tokenizer is not None:
            parts.append({"hf_tokenizer": self.tokenizer, "pad_id": self.pad_id})
        return content_hash(parts)
