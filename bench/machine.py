"""The first line every benchmark prints, so results in RESULTS.md say where they were measured."""

from __future__ import annotations

import os
import platform
from datetime import date

import torch


def header(script: str) -> str:
    """`# bench/<script>  <date>  <machine>, <cores>, torch <version> (<threads>), load average`."""
    return (
        f"# bench/{script}  {date.today()}  {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
