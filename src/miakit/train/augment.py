"""Training-time augmentation of image batches, on the training device, from a seeded generator.

Order per batch: horizontal flip, random crop after reflect padding (the LiRA order: flip, then
pad and crop), rotation, color jitter, all on images in [0, 1]; then normalization; then cutout
(the cut square is 0 after normalization, i.e. the data set's mean color) and CutMix. Every
draw comes from the model's own augmentation generator, so a model's augmented batches are the
same whether it trains alone or stacked with others.

The flip is random per image and batch, or alternating (the speed records'): each record gets a
random orientation once, for the even epochs, and the mirrored one in the odd epochs, so that
every pair of epochs shows both; that needs each record's position among the model's records and
the epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from miakit.config import AugmentConfig
from miakit.errors import MiakitError
from miakit.train.inputs import Normalization, unit_images


@dataclass
class Batch:
    """Model inputs and targets: loss = lam · CE(y) + (1 − lam) · CE(y_mix) (CutMix, else lam = 1)."""

    x: Tensor
    y: Tensor
    y_mix: Tensor
    lam: float


def flip(x: Tensor, g: torch.Generator) -> Tensor:
    return flip_where(x, torch.rand(len(x), generator=g, device=x.device) < 0.5)


def flip_where(x: Tensor, mask: Tensor) -> Tensor:
    """The images with mask True mirrored left to right."""
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def random_crop(x: Tensor, padding: int, g: torch.Generator) -> Tensor:
    """Each image cropped back to its size at a random offset of its reflect-padded copy."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * padding + 1, (2, b), generator=g, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def rotate(x: Tensor, max_degrees: float, g: torch.Generator) -> Tensor:
    """Rotation by a uniform angle in ±max_degrees about the center; corners filled with 0."""
    angle = (torch.rand(len(x), generator=g, device=x.device) * 2 - 1) * math.radians(max_degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_jitter(x: Tensor, strength: float, g: torch.Generator) -> Tensor:
    """Brightness, contrast and saturation each scaled by a factor uniform in 1 ± strength."""
    factors = 1 + (torch.rand(3, len(x), 1, 1, 1, generator=g, device=x.device) * 2 - 1) * strength
    x = (x * factors[0]).clamp(0, 1)
    mean_gray = grayscale(x).mean((1, 2, 3), keepdim=True)
    x = ((x - mean_gray) * factors[1] + mean_gray).clamp(0, 1)
    gray = grayscale(x)
    return ((x - gray) * factors[2] + gray).clamp(0, 1)


def grayscale(x: Tensor) -> Tensor:
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    return (x * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


def box_mask(h: int, w: int, cy: Tensor, cx: Tensor, size_y: Tensor, size_x: Tensor) -> Tensor:
    """bool [B, 1, H, W]: True inside each image's box centered at (cy, cx), clipped to the image."""
    top, left = cy - size_y // 2, cx - size_x // 2
    ys = torch.arange(h, device=cy.device)[None, :, None]
    xs = torch.arange(w, device=cy.device)[None, None, :]
    inside_y = (ys >= top[:, None, None]) & (ys < (top + size_y)[:, None, None])
    inside_x = (xs >= left[:, None, None]) & (xs < (left + size_x)[:, None, None])
    return (inside_y & inside_x)[:, None]


def cutout(x: Tensor, size: int, g: torch.Generator) -> Tensor:
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=g, device=x.device)
    cx = torch.randint(0, w, (b,), generator=g, device=x.device)
    side = torch.full((b,), size, device=x.device)
    return x.masked_fill(box_mask(h, w, cy, cx, side, side), 0.0)


def cutmix(x: Tensor, y: Tensor, g: torch.Generator) -> Batch:
    """CutMix (Yun et al. 2019, α = 1): a box of another image of the batch pasted in, the label
    weight lam being the share of the image left uncovered."""
    b, _, h, w = x.shape
    lam = torch.rand((), generator=g, device=x.device)
    perm = torch.randperm(b, generator=g, device=x.device)
    ratio = (1 - lam).sqrt()
    size_y, size_x = (ratio * h).long().view(1), (ratio * w).long().view(1)
    cy = torch.randint(0, h, (1,), generator=g, device=x.device)
    cx = torch.randint(0, w, (1,), generator=g, device=x.device)
    mask = box_mask(h, w, cy, cx, size_y, size_x)
    covered = mask.sum().item() / (h * w)
    return Batch(torch.where(mask, x[perm], x), y, y[perm], 1.0 - covered)


class Augmenter:
    """Turns a batch of stored records into model inputs, augmenting images as configured."""

    def __init__(
        self,
        cfg: AugmentConfig,
        norm: Normalization | None,
        device: torch.device,
        seed: int | None,
        records: int,
    ) -> None:
        """`records`: how many records the model trains on (the alternating flip draws each
        one's orientation here, before any batch)."""
        self.cfg, self.norm = cfg, norm
        self.active = any(cfg.model_dump().values())
        if self.active and seed is None:
            raise MiakitError("train.augment is on: pass the model's augmentation seed")
        self.generator = torch.Generator(device=device)
        if seed is not None:
            self.generator.manual_seed(seed)
        self.even_epoch_flips = (
            torch.rand(records, generator=self.generator, device=device) < 0.5
            if cfg.flip == "alternate"
            else None
        )

    def __call__(
        self, x: Tensor, y: Tensor, positions: Tensor | None = None, epoch: int = 0
    ) -> Batch:
        """Model inputs for records x with labels y; `positions` (their indices among the
        model's records) and `epoch` (0-based) matter to the alternating flip only."""
        if x.dtype != torch.uint8:
            if self.active:
                raise MiakitError("train.augment works on images; these records are features")
            return Batch(x, y, y, 1.0)
        cfg, g = self.cfg, self.generator
        images = unit_images(x)
        if self.even_epoch_flips is not None:
            if positions is None:
                raise ValueError("the alternating flip needs the records' positions")
            images = flip_where(images, self.even_epoch_flips[positions] ^ (epoch % 2 == 1))
        elif cfg.flip:
            images = flip(images, g)
        if cfg.crop_padding:
            images = random_crop(images, cfg.crop_padding, g)
        if cfg.rotation:
            images = rotate(images, cfg.rotation, g)
        if cfg.color_jitter:
            images = color_jitter(images, cfg.color_jitter, g)
        if self.norm is not None:
            images = self.norm(images)
        if cfg.cutout:
            images = cutout(images, cfg.cutout, g)
        if cfg.cutmix and torch.rand((), generator=g, device=x.device).item() < cfg.cutmix:
            return cutmix(images, y, g)
        return Batch(images, y, y, 1.0)
