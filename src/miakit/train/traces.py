"""Loss traces (the LT-IQR paper's artifact): every pool record's loss before training and after
each epoch, members and non-members alike, stored as float16 [E+1, N].

Losses are of the records as they are (no augmentation), with the model in eval mode and plain
cross-entropy (no label smoothing), so a trace row equals the loss of the model saved at that epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from miakit.train.inputs import Normalization, model_inputs

CHUNK = 4096


@torch.no_grad()
def record_losses(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    norm: Normalization | None,
) -> Tensor:
    """Per-record cross-entropy float32 [N]; the caller puts the model in eval mode."""
    losses = [
        F.cross_entropy(forward(model_inputs(xc, norm)).float(), yc, reduction="none")
        for xc, yc in zip(x.split(CHUNK), y.split(CHUNK), strict=True)
    ]
    return torch.cat(losses)


class LossTrace:
    """Rows collected on the device during training; `array()` is the [E+1, N] float16 result."""

    def __init__(self) -> None:
        self.rows: list[Tensor] = []

    def add(self, losses: Tensor) -> None:
        self.rows.append(losses.to(torch.float16))

    def array(self) -> np.ndarray:
        return torch.stack(self.rows).cpu().numpy()
