"""Augmentation invariants, each checked against an independent construction in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miakit.config import AugmentConfig
from miakit.train.augment import (
    Augmenter,
    color_jitter,
    cutmix,
    cutout,
    flip,
    random_crop,
    rotate,
)
from miakit.train.inputs import Normalization


def images(b: int = 16, c: int = 3, h: int = 8, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flip_mirrors_some_images_and_leaves_the_others() -> None:
    x = images(64)
    out = flip(x, gen()).numpy()
    mirrored = [np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, x.numpy(), strict=True)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x.numpy(), strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 10 < sum(mirrored) < 54


def test_alternating_flip_mirrors_each_record_in_every_other_epoch() -> None:
    x = (torch.rand(40, 6, 7, 3, generator=gen()) * 255).to(torch.uint8)
    y = torch.zeros(40, dtype=torch.long)
    augmenter = Augmenter(AugmentConfig(flip="alternate"), None, torch.device("cpu"), 5, len(x))
    unit = x.numpy().transpose(0, 3, 1, 2) / 255  # [B, C, H, W] as numpy

    def mirrored_in(epoch: int) -> np.ndarray:
        """Whether each record came out mirrored, its batches in a fresh random order."""
        out = np.empty(len(x), dtype=bool)
        for positions in torch.randperm(len(x), generator=gen(epoch)).split(7):
            batch = augmenter(x[positions], y[positions], positions, epoch).x.numpy()
            for p, image in zip(positions.tolist(), batch, strict=True):
                mirrored = np.allclose(image, unit[p][:, :, ::-1])
                assert mirrored or np.allclose(image, unit[p])
                out[p] = mirrored
        return out

    first = mirrored_in(0)
    assert 10 < first.sum() < 30
    for epoch in (1, 2, 3):
        assert np.array_equal(mirrored_in(epoch), first ^ (epoch % 2 == 1))


def test_random_crop_is_a_window_of_the_reflect_padded_image() -> None:
    x, p = images(32), 3
    out = random_crop(x, p, gen()).numpy()
    offsets = set()
    for o, i in zip(out, x.numpy(), strict=True):
        padded = np.pad(i, ((0, 0), (p, p), (p, p)), mode="reflect")
        found = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if np.array_equal(o, padded[:, dy : dy + 8, dx : dx + 10])
        ]
        assert found, "crop is no window of the padded image"
        offsets.add(found[0])
    assert len(offsets) > 5  # offsets vary across the batch


def test_rotation_by_almost_nothing_is_the_identity_and_keeps_the_range() -> None:
    x = images()
    torch.testing.assert_close(rotate(x, 1e-6, gen()), x, atol=1e-4, rtol=0)
    turned = rotate(x, 30, gen())
    assert turned.shape == x.shape and turned.min() >= 0 and turned.max() <= 1
    assert not torch.allclose(turned, x)


def test_color_jitter_keeps_grey_images_grey_and_values_in_range() -> None:
    grey = images(c=1).expand(-1, 3, -1, -1).contiguous()
    out = color_jitter(grey, 0.4, gen())
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(color_jitter(images(), 0.0, gen()), images())


def test_cutout_zeroes_one_clipped_square_and_nothing_else() -> None:
    x = images(32) + 1  # no zeros before
    out = cutout(x, 4, gen()).numpy()
    for o, i in zip(out, x.numpy(), strict=True):
        zero = (o == 0).all(0)
        assert np.array_equal(o[:, ~zero], i[:, ~zero])
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        assert len(rows) <= 4 and len(cols) <= 4
        assert zero[np.ix_(rows, cols)].all()  # a rectangle: the square clipped by the border


def test_cutmix_pastes_a_box_of_a_partner_and_weights_labels_by_area() -> None:
    x, y = images(16), torch.arange(16)
    for seed in range(5):
        batch = cutmix(x, y, gen(seed))
        partner = batch.y_mix  # labels are indices here, so they name the partner image
        own = (batch.x == x).all(1)
        pasted = (batch.x == x[partner]).all(1)
        assert (own | pasted).all()
        assert batch.lam == pytest.approx(own[0].float().mean().item())
        assert sorted(partner.tolist()) == list(range(16))


def test_augmenter_is_deterministic_per_seed_and_normalizes_after_augmenting() -> None:
    cfg = AugmentConfig(flip=True, crop_padding=2, rotation=10, color_jitter=0.2, cutout=3)
    norm = Normalization((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    x = (torch.rand(8, 10, 10, 3, generator=gen()) * 255).to(torch.uint8)
    y = torch.arange(8)

    def run(seed: int) -> torch.Tensor:
        return Augmenter(cfg, norm, torch.device("cpu"), seed, len(x))(x, y).x

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    plain = Augmenter(AugmentConfig(), norm, torch.device("cpu"), None, len(x))(x, y).x
    expected = (x.permute(0, 3, 1, 2).float() / 255 - 0.4) / 0.2
    expected[:, 0] = (x[..., 0].float() / 255 - 0.5) / 0.2
    expected[:, 2] = (x[..., 2].float() / 255 - 0.3) / 0.2
    torch.testing.assert_close(plain, expected)
