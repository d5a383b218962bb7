"""Loss traces (the LT-IQR paper's artifact): every pool record's loss before training and after
each epoch, members and non-members alike, stored as float16 [E+1, N].

Tracing costs one forward pass over the whole pool per recorded epoch; with train.trace_every = k
a row is kept before training, after every k-th epoch and after the last epoch run, so the cost
drops k-fold and the trace has fewer rows (the epochs are in the model's meta.json).

Losses are of the records as they are (no augmentation), with the model in eval mode and plain
cross-entropy (no label smoothing), so a trace row equals the loss of the model saved at that epoch.
The loss is computed stably in float64 and rounded once to float16, so confident records keep
their order down to float16's smallest subnormal (6e-8) instead of all reading 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from miakit.train.inputs import Normalization, model_inputs

CHUNK = 4096


def stable_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """−log p_y per record, float64 [N], from logits [N, C], as softplus(−φ) with the log-odds
    φ = z_y − logsumexp_{j≠y} z_j (as `miakit.signals.cross_entropy`): it keeps the order of p_y on
    confident records, where logsumexp(z) − z_y cancels to exactly 0."""
    z = logits.double()
    index = labels[:, None]
    phi = z.gather(1, index)[:, 0] - torch.logsumexp(z.scatter(1, index, -torch.inf), dim=1)
    return torch.logaddexp(torch.zeros_like(phi), -phi)


@torch.no_grad()
def record_losses(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    norm: Normalization | None,
) -> Tensor:
    """Per-record cross-entropy float64 [N] (`stable_cross_entropy`); the caller puts the model in
    eval mode."""
    losses = [
        stable_cross_entropy(forward(model_inputs(xc, norm)), yc)
        for xc, yc in zip(x.split(CHUNK), y.split(CHUNK), strict=True)
    ]
    return torch.cat(losses)


class LossTrace:
    """Rows collected on the device during training; `array()` is the [rows, N] float16 result,
    row r taken after epoch `epochs[r]` (0: before training)."""

    def __init__(self, every: int, last_epoch: int) -> None:
        self.every, self.last_epoch = every, last_epoch
        self.rows: list[Tensor] = []
        self.epochs: list[int] = []

    def due(self, epoch: int, stopping: bool = False) -> bool:
        """Whether a row is kept after `epoch`: every `every`-th, the last, one stopped early at."""
        return epoch % self.every == 0 or epoch == self.last_epoch or stopping

    def add(self, epoch: int, losses: Tensor) -> None:
        self.rows.append(losses.to(torch.float16))
        self.epochs.append(epoch)

    def array(self) -> np.ndarray:
        return torch.stack(self.rows).cpu().numpy()
