"""Lookahead weights with the schedule of the CIFAR-10 training-speed records (airbench).

Every LOOKAHEAD_EVERY optimizer steps the slow copy moves towards the weights, slow ← decay·slow +
(1 − decay)·weights, and the weights jump back to it; decay = 0.95⁵ · t³ with t the fraction of
training done, so the pull is nil early and strong at the end, where the model ends on the slow
weights. Floating-point BatchNorm statistics are averaged as the weights are, as in the records.
"""

from __future__ import annotations

import torch
from torch import nn

LOOKAHEAD_EVERY = 5


class Lookahead:
    def __init__(self, model: nn.Module, total_steps: int) -> None:
        self.tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.slow = [t.detach().clone() for t in self.tensors]
        self.total_steps = total_steps

    def after_step(self, steps_done: int) -> None:
        """Called after every optimizer step with the number of steps taken so far."""
        if steps_done % LOOKAHEAD_EVERY == 0:
            self._pull(0.95**LOOKAHEAD_EVERY * (steps_done / self.total_steps) ** 3)

    def finish(self) -> None:
        """The model takes the slow weights."""
        self._pull(1.0)

    @torch.no_grad()
    def _pull(self, decay: float) -> None:
        for slow, weights in zip(self.slow, self.tensors, strict=True):
            slow.lerp_(weights, 1 - decay)
            weights.copy_(slow)
