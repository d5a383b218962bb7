"""Wide ResNets (Zagoruyko & Komodakis 2016) as the loss-traces and LiRA PyTorch ports build them.

Pre-activation blocks (BN-ReLU-conv), 1×1 projection where the shape changes, widths 16·k, 32·k,
64·k, optional dropout between a block's two convolutions. WRN-28-2 has 1.47M parameters.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.project = (
            nn.Conv2d(c_in, c_out, 1, stride, bias=False) if c_in != c_out or stride != 1 else None
        )

    def forward(self, x: Tensor) -> Tensor:
        act = F.relu(self.bn1(x))
        # where the shape changes the shortcut also starts from the activated input
        shortcut = x if self.project is None else self.project(act)
        out = self.conv1(act)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int,
        widen: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        per_stage = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(input_shape[-1], widths[0], 3, 1, 1, bias=False)
        blocks, c_in = [], widths[0]
        for stage, width in enumerate(widths[1:]):
            for j in range(per_stage):
                stride = 2 if stage > 0 and j == 0 else 1
                blocks.append(WideBlock(c_in, width, stride, dropout))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def wrn28_2(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> WideResNet:
    return WideResNet(input_shape, num_classes, depth=28, widen=2, dropout=dropout)


def wrn40_4(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> WideResNet:
    return WideResNet(input_shape, num_classes, depth=40, widen=4, dropout=dropout)
