"""The first line every benchmark prints, so results in RESULTS.md say where they were measured."""

from __future__ import annotations

import os
import platform
import time
from datetime import date

import torch


def header(script: str) -> str:
    """`# bench/<script>  <date>  <machine>, <cores>, torch <version> (<threads>), load average`."""
    return (
        f"# bench/{script}  {date.today()}  {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f}"
    )


class StageTimer:
    """Wall and CPU seconds (this process's, all threads) of named stages, in call order."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, stage: str, fn, *args):
        """fn(*args), timed as `stage`; returns what it returns."""
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn(*args)
        self.wall[stage] = time.perf_counter() - start
        self.cpu[stage] = time.process_time() - start_cpu
        return result
