"""Models per hour on this machine: in-process vs 1 and 2 local worker processes, in one run.

Trains the same digits MLPs (fresh run directory each time) with each executor and prints
models per hour and the ratio to the in-process executor. On a GPU machine, `--gpu-pack K` also
compares K models packed on one GPU (fractional Ray GPUs) against one at a time.
Usage: python bench/scale.py [--models 16] [--epochs 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from machine import header

from miakit import pipeline
from miakit.config import load_config
from miakit.store import RunDir


def models_per_hour(overrides: list[str], models: int) -> float:
    config = load_config(None, overrides)
    with tempfile.TemporaryDirectory() as root:
        run = RunDir(root)
        planned = pipeline.plan(config, run)
        start = time.perf_counter()
        pipeline.train(planned, run)
        seconds = time.perf_counter() - start
    return models * 3600 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--gpu-pack", type=int, default=0)
    args = parser.parse_args()
    base = [f"split.num_models={args.models}", f"train.epochs={args.epochs}"]
    setups = {
        "in-process": [],
        "1 worker process": ["execution.executor=processes", "execution.workers=1"],
        "2 worker processes": ["execution.executor=processes", "execution.workers=2"],
    }
    if args.gpu_pack and torch.cuda.is_available():
        setups["ray, 1 model per GPU"] = ["execution.executor=ray", "execution.gpus_per_task=1"]
        setups[f"ray, {args.gpu_pack} models per GPU"] = [
            "execution.executor=ray",
            f"execution.gpus_per_task={1 / args.gpu_pack}",
        ]
    print(f"{header('scale.py')}; {args.models} digits MLPs, {args.epochs} epochs")
    rates = {name: models_per_hour(base + extra, args.models) for name, extra in setups.items()}
    reference = rates["in-process"]
    for name, rate in rates.items():
        print(f"{name:>24}: {rate:8.0f} models/hour  ({rate / reference:.2f}x in-process)")


if __name__ == "__main__":
    main()
