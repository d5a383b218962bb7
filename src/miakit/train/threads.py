"""How many torch threads a process that trains or queries models uses on the CPU.

A small model (the digits MLP: 19k parameters) does too little work per step to gain from a
second thread: the threads spend their time synchronising, and when other processes share the
cores (a second audit, other users) each step waits for a descheduled thread. Measured on 2
cores (bench/threads.py, bench/RESULTS.md): with a busy neighbour, one digits MLP trained 4–9×
slower on two threads than on one. Models under `SMALL_MODEL_PARAMETERS` therefore run on one
thread unless `execution.threads` says otherwise; larger ones keep the process's setting
(torch's default, or `execution.threads_per_worker` in worker processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

SMALL_MODEL_PARAMETERS = 1_000_000


def threads_for(model: nn.Module, setting: int | None) -> int | None:
    """The thread count for training or querying `model`: `setting` when given, 1 for a model
    under SMALL_MODEL_PARAMETERS, else None (keep the process's count)."""
    if setting is not None:
        return setting
    parameters = sum(p.numel() for p in model.parameters())
    return 1 if parameters < SMALL_MODEL_PARAMETERS else None


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` intra-op threads (None: unchanged), then restore the count."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
