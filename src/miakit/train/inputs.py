"""What a model sees of the stored records, and how it runs on the device.

Images are stored and moved to the device as uint8 [N, H, W, C] (a quarter of float32's bytes);
each batch becomes float [B, C, H, W] on the device, in [0, 1] for augmentation and then
normalized with the data set's fixed per-channel constants. The permuted view keeps NHWC memory,
i.e. it is already channels_last. Feature vectors pass through unchanged.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation of images scaled to [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: Tensor) -> Tensor:
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std


def is_images(x: Tensor) -> bool:
    return x.dtype == torch.uint8 and x.dim() == 4


def unit_images(x: Tensor) -> Tensor:
    """uint8 [B, H, W, C] → float32 [B, C, H, W] in [0, 1] (channels_last memory)."""
    return x.permute(0, 3, 1, 2).float() / 255


def model_inputs(x: Tensor, norm: Normalization | None) -> Tensor:
    """Records as the model takes them: images normalized (when `norm` is given), features as is."""
    if not is_images(x):
        return x
    images = unit_images(x)
    return norm(images) if norm is not None else images


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on CUDA when asked; full precision elsewhere, so CPU runs stay exact."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
