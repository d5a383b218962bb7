"""Learning-rate schedules as a factor of the base lr at each optimizer step.

The factor is a warm-up ramp times the schedule's shape, both functions of the step; the one-model
and the batched trainer call the same function, so their learning rates agree exactly.
"""

from __future__ import annotations

import math

from miakit.config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Factor for optimizer step `step` (0-based) of a run of cfg.epochs × steps_per_epoch steps.

    With t = step / total steps: cosine: ½(1 + cos πt), per step; cosine-epoch: ½(1 + cos πe/E)
    with e the epoch, as torch's CosineAnnealingLR stepped once an epoch; lira-cosine: the LiRA
    reference code's cos(7πt/16) · min(100t, 1) (its own 1% warm-up, from 0 at step 0);
    onecycle: after the warm-up, linear decay to zero; step: × gamma at each milestone epoch;
    constant: 1. The warm-up (cfg.warmup_epochs) ramps linearly from f + (1 − f)/warmup_steps
    to 1, f = cfg.warmup_from.
    """
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    ramp = cfg.warmup_from + (1 - cfg.warmup_from) * ramp
    if cfg.schedule == "cosine":
        shape = 0.5 * (1 + math.cos(math.pi * step / total))
    elif cfg.schedule == "cosine-epoch":
        shape = 0.5 * (1 + math.cos(math.pi * (step // steps_per_epoch) / cfg.epochs))
    elif cfg.schedule == "lira-cosine":
        t = step / total
        shape = math.cos(t * 7 * math.pi / 16) * min(100 * t, 1.0)
    elif cfg.schedule == "onecycle":
        shape = min(1.0, (total - step) / max(total - warmup, 1))
    elif cfg.schedule == "step":
        epoch = step // steps_per_epoch
        shape = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    else:
        shape = 1.0
    return ramp * shape
