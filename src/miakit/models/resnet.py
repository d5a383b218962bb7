"""ResNets for 32×32 images: ResNet-20 (He et al. 2016, §4.2) and ResNet-18 with the CIFAR stem.

ResNet-20 uses the paper's parameter-free shortcut (option A: stride-2 subsampling and zero
channels), hence its 0.27M parameters; ResNet-18 uses 1×1 projection shortcuts and a 3×3 stride-1
stem without max-pooling, as CIFAR ports of it do (11.2M parameters).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ZeroPadShortcut(nn.Module):
    """Option A: keep every other pixel and append zero channels; no parameters."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, projection: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = (
                nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                if projection
                else ZeroPadShortcut(c_out - c_in)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """3×3 stem, stages of basic blocks (the first of each later stage halves the resolution)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        widths: tuple[int, ...],
        blocks: int,
        projection: bool,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[-1], widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        layers, c_in = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(c_in, width, stride, projection))
                c_in = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet20(input_shape: tuple[int, ...], num_classes: int) -> CifarResNet:
    return CifarResNet(input_shape, num_classes, (16, 32, 64), blocks=3, projection=False)


def resnet18(input_shape: tuple[int, ...], num_classes: int) -> CifarResNet:
    return CifarResNet(input_shape, num_classes, (64, 128, 256, 512), blocks=2, projection=True)
