"""Seconds per digits MLP (the default audit's model) on 1 and on 2 torch threads, alone and
beside a busy neighbour: a second process training the same MLPs with torch's default threads,
as a second audit would. The ratio 2 threads / 1 thread is what `execution.threads` defaults on.
Usage: python bench/threads.py [--models 4] [--epochs 60]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
import torch
from machine import header

from miakit.config import AuditConfig
from miakit.data import balanced_keep, load_pool
from miakit.models import build_model
from miakit.seeding import rng
from miakit.train.trainer import train_model


def seconds_per_model(count: int, epochs: int, threads: int | None) -> float:
    """Mean seconds to train `count` digits MLPs one by one on `threads` (None: as is)."""
    if threads is not None:
        torch.set_num_threads(threads)
    config = AuditConfig()
    cfg = config.train.model_copy(update={"epochs": epochs})
    pool = load_pool("digits")
    keep = balanced_keep(2 * count, pool.num_records, rng(config.seed, "keep"))
    x, y = torch.from_numpy(pool.x), torch.from_numpy(pool.y)
    start = time.perf_counter()
    for m in range(count):
        rows = torch.from_numpy(np.flatnonzero(keep[m]))
        net = build_model("mlp", (64,), 10, hidden=config.model.hidden)
        train_model(net, x[rows], y[rows], cfg, m)
    return (time.perf_counter() - start) / count


def neighbour(epochs: int) -> None:
    while True:
        seconds_per_model(1, epochs, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    print(header("threads.py"))
    seconds_per_model(1, 1, 1)  # first-use costs outside the timings
    for busy in (False, True):
        other = None
        if busy:
            other = multiprocessing.get_context("spawn").Process(
                target=neighbour, args=(args.epochs,), daemon=True
            )
            other.start()
            time.sleep(3)  # let it start training
        figures = {t: seconds_per_model(args.models, args.epochs, t) for t in (1, 2)}
        if other is not None:
            other.terminate()
            other.join()
        label = "beside a busy neighbour" if busy else "alone"
        print(
            f"{label:>24}: {figures[1]:6.2f} s per MLP on 1 thread, {figures[2]:6.2f} s on 2: "
            f"2 threads take {figures[2] / figures[1]:.1f}x as long"
        )


if __name__ == "__main__":
    main()
