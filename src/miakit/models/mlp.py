"""Multi-layer perceptrons for tabular data and flattened small images."""

from __future__ import annotations

import math
from itertools import pairwise

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """Linear layers of the given hidden widths, each followed by the activation (and dropout).

    `hidden=[1024, 512, 256, 128], activation="tanh"` is the Purchase-100 / Texas-100 net of the
    membership-inference literature (Nasr et al. 2018; Jia et al. 2019).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        widths = [math.prod(input_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
