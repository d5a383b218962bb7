"""Learning-rate schedules as a factor of the base lr at each optimizer step.

The factor is a warm-up ramp times the schedule's shape, both functions of the step; the one-model
and the batched trainer call the same function, so their learning rates agree exactly.
"""

from __future__ import annotations

import math

from miakit.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Factor for optimizer step `step` (0-based) of a run of cfg.epochs × steps_per_epoch steps.

    cosine: ½(1 + cos πt) over the whole run; onecycle: after the warm-up, linear decay to zero;
    step: × gamma at each milestone epoch; constant: 1. The warm-up ramps linearly from
    1/warmup_steps to 1 over cfg.warmup_epochs epochs.
    """
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if cfg.schedule == "cosine":
        shape = 0.5 * (1 + math.cos(math.pi * step / total))
    elif cfg.schedule == "onecycle":
        shape = min(1.0, (total - step) / max(total - warmup, 1))
    elif cfg.schedule == "step":
        epoch = step // steps_per_epoch
        shape = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    else:
        shape = 1.0
    return ramp * shape
