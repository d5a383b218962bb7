"""A fast CIFAR network in the style of the CIFAR-10 training-speed records (airbench-like).

A 2×2 stem conv (8·C channels), then three conv groups of widths 64, 256, 256, each
conv → max-pool → BN → GELU → conv → BN → GELU, then a 3×3 max-pool and a bias-free linear head
scaled by 1/9. About 1.9M parameters. As in the records: the BatchNorm layers learn a shift but no
scale (their weight stays 1), keep running statistics with momentum 0.4 (torch's convention) and
eps 1e-12, and each 3×3 conv starts as the identity on its first c_in output channels (Dirac),
the rest drawn as torch's default.

The stem starts as the patch-whitening of the model's own training images and stays frozen
(`init_from_data`, which the trainers call before the first step): its filters are the principal
directions of the 2×2×C patches, each scaled to unit variance and paired with its negative, so
that the GELU after it sees decorrelated inputs of both signs from the first step.

The records' training recipe (lookahead weights, a 64× learning rate on the BN shifts, lr and
weight decay) is configs/fastnet_cifar10.yaml's; bench/RESULTS.md has its measured accuracy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

WHITENING_EPS = 5e-4  # added to each eigenvalue: bounds the gain of near-constant directions


class ShiftBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with a learned shift (`bias`) and a scale frozen at 1 (`weight`, not trained).

    The scale is a frozen tensor of ones, as in the speed records, rather than absent: CUDA's
    native batch-norm backward returns an empty bias gradient when it is given no weight
    (seen with torch 2.11 on an H200 in eager mode; compiled graphs were unaffected).
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


def dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A bias-free 3×3 conv whose first min(c_in, c_out) filters pass their channel through."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


def conv_group(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        dirac_conv(c_in, c_out),
        nn.MaxPool2d(2),
        ShiftBatchNorm(c_out),
        nn.GELU(),
        dirac_conv(c_out, c_out),
        ShiftBatchNorm(c_out),
        nn.GELU(),
    )


class FastNet(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        channels = input_shape[-1]
        self.stem = nn.Sequential(nn.Conv2d(channels, 8 * channels, 2), nn.GELU())
        self.groups = nn.Sequential(
            conv_group(8 * channels, 64), conv_group(64, 256), conv_group(256, 256)
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(256, num_classes, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(self.groups(self.stem(x))).flatten(1)
        return self.fc(out) / 9

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Stem = the patch-whitening of `images` (model inputs [B, C, H, W]), frozen: on them
        its first 4C outputs have zero mean and covariance diag(λ / (λ + eps)) ≈ I."""
        conv = self.stem[0]
        size = conv.kernel_size
        patches = images.double().unfold(2, size[0], 1).unfold(3, size[1], 1)
        patches = patches.permute(0, 2, 3, 1, 4, 5).flatten(0, 2).flatten(1)  # [P, C·kh·kw]
        mean = patches.mean(0)
        centred = patches - mean
        eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / len(patches))
        filters = eigenvectors.T / (eigenvalues + WHITENING_EPS).sqrt()[:, None]
        weight = torch.cat([filters, -filters])
        conv.weight.copy_(weight.view_as(conv.weight))
        conv.bias.copy_(-(weight @ mean))
        conv.weight.requires_grad_(False)
        conv.bias.requires_grad_(False)
