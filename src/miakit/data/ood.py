"""Out-of-distribution records for false-positive studies: records no model trained on, far from
the pool, on which a sound attack should not call "member".

Kinds:
- `dataset`: another registered data set brought to the pool's shape (images resized, bilinear,
  and converted to the pool's channels; tabular data must have the pool's feature count);
- `permuted`: held-out records with their pixels (or features) shuffled, one permutation each;
- `scaled`: held-out records with intensities multiplied by `factor` (clipped to 0..255);
- `noise`: Gaussian noise; for images per channel with the pool's published mean and std, so no
  record's statistics are used; for features standard normal.

Held-out records are the pool's test split, or the pool itself when it has none. Records derived
from held-out ones keep their labels; the others get uniform random labels (the loss needs one,
and no label in the pool's label space is true for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from miakit.data.pool import Pool
from miakit.data.registry import load_pool
from miakit.errors import MiakitError

OOD_KINDS = ("dataset", "permuted", "scaled", "noise")


@dataclass(frozen=True)
class OODSet:
    name: str
    x: np.ndarray
    y: np.ndarray


def make_ood(
    kind: str,
    pool: Pool,
    count: int,
    rng: np.random.Generator,
    *,
    source: str | None = None,
    data_dir: Path | None = None,
    factor: float = 0.5,
) -> OODSet:
    """`count` out-of-distribution records shaped like the pool's records."""
    if kind not in OOD_KINDS:
        raise MiakitError(f"ood kind {kind!r} is unknown; known: {', '.join(OOD_KINDS)}")
    if count < 1:
        raise MiakitError(f"ood count must be positive, got {count}")
    if kind == "dataset":
        if source is None:
            raise MiakitError("ood kind 'dataset' needs the name of the data set to draw from")
        other = load_pool(source, data_dir)
        x_other = other.x_test if other.x_test is not None else other.x
        chosen = _choose(len(x_other), count, rng, source)
        x = conform(x_other[chosen], pool, source)
        return OODSet(f"{source}→{pool.name}", x, _random_labels(pool, count, rng))
    if kind == "noise":
        return OODSet(
            f"noise({pool.name})", _noise(pool, count, rng), _random_labels(pool, count, rng)
        )
    held_x, held_y = (pool.x_test, pool.y_test) if pool.x_test is not None else (pool.x, pool.y)
    chosen = _choose(len(held_x), count, rng, pool.name)
    x, y = held_x[chosen], held_y[chosen]
    if kind == "permuted":
        return OODSet(f"permuted({pool.name})", _permute(x, rng), y)
    if factor < 0:
        raise MiakitError(f"ood factor must be non-negative, got {factor}")
    scaled = x.astype(np.float32) * factor
    if pool.is_image:
        scaled = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return OODSet(f"scaled({pool.name}, {factor})", scaled, y)


def _choose(available: int, count: int, rng: np.random.Generator, name: str) -> np.ndarray:
    if count > available:
        raise MiakitError(f"ood: {count} records asked for, {name} has {available}")
    return np.sort(rng.choice(available, count, replace=False))


def _random_labels(pool: Pool, count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, pool.num_classes, count, dtype=np.int64)


def conform(x: np.ndarray, pool: Pool, name: str) -> np.ndarray:
    """Records of another data set in the pool's record shape and dtype."""
    if not pool.is_image:
        if x.ndim != 2 or x.shape[1] != pool.x.shape[1]:
            raise MiakitError(
                f"ood: {name} records have shape {list(x.shape[1:])}, the pool's "
                f"{list(pool.x.shape[1:])}; tabular data sets must have the same features"
            )
        return x.astype(np.float32)
    if x.ndim != 4 or x.dtype != np.uint8:
        raise MiakitError(f"ood: {name} is not an image data set; the pool {pool.name} is")
    height, width, channels = pool.x.shape[1:]
    out = np.empty((len(x), height, width, channels), dtype=np.uint8)
    for i, image in enumerate(x):
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        picture = picture.convert("L" if channels == 1 else "RGB")
        if picture.size != (width, height):
            picture = picture.resize((width, height), Image.Resampling.BILINEAR)
        out[i] = np.asarray(picture).reshape(height, width, channels)
    return out


def _permute(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each record's positions shuffled; an image's channels move together."""
    flat = x.reshape(len(x), -1, x.shape[-1]) if x.ndim == 4 else x[..., None]
    order = rng.permuted(np.broadcast_to(np.arange(flat.shape[1]), flat.shape[:2]), axis=1)
    shuffled = np.take_along_axis(flat, order[..., None], axis=1)
    return shuffled.reshape(x.shape)


def _noise(pool: Pool, count: int, rng: np.random.Generator) -> np.ndarray:
    shape = (count, *pool.x.shape[1:])
    if not pool.is_image:
        return rng.standard_normal(shape, dtype=np.float32)
    if pool.mean is None or pool.std is None:
        raise MiakitError(f"ood noise: the image pool {pool.name} has no normalization constants")
    mean = np.array(pool.mean) * 255
    std = np.array(pool.std) * 255
    return np.clip(np.rint(mean + std * rng.standard_normal(shape)), 0, 255).astype(np.uint8)
