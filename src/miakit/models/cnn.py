"""A small CNN: three conv-ReLU-max-pool stages and a linear head, for fast CPU tests and shadow models.

No BatchNorm, so batches of any size train it the same way, and the batched trainer can stack it.
"""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Widths 32, 64, 128; global average pooling, so any image of at least 8×8 pixels fits."""

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        channels = input_shape[-1]
        layers: list[nn.Module] = []
        for width in (32, 64, 128):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(channels, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
