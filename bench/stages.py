"""Time each stage of the README's main job (the default digits audit) in one run.

Prints wall and CPU seconds per stage and each stage's share of the whole, so a change that
slows one stage shows up as a ratio, whatever the machine. On a busy machine the CPU seconds
(this process's, all threads) are what the stage would take on an idle one with one thread.
Usage: python bench/stages.py [--config configs/digits.yaml] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile

from machine import StageTimer, header

from miakit import pipeline
from miakit.config import load_config
from miakit.store import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=None, help="YAML config (default: the defaults)")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    timed = StageTimer()
    with tempfile.TemporaryDirectory() as root:
        run = RunDir(root)
        planned = timed("plan", pipeline.plan, config, run)
        timed("train", pipeline.train, planned, run)
        timed("query", pipeline.query, planned, run)
        timed("attack", pipeline.attack, run, config)
        metrics = timed("evaluate", pipeline.evaluate, run, config)
        timed("report", pipeline.report, run)
    timings, cpu = timed.wall, timed.cpu
    total, total_cpu = sum(timings.values()), sum(cpu.values())
    print(header("stages.py"))
    print(
        f"config: {config.split.num_models} models, {config.train.epochs} epochs, "
        f"{len(config.attacks)} attacks, config {args.config or 'defaults'}, "
        f"overrides {args.overrides or 'none'}"
    )
    for stage, seconds in timings.items():
        print(
            f"{stage:>9}: {seconds:8.2f} s  {100 * seconds / total:5.1f}%   "
            f"CPU {cpu[stage]:8.2f} s  {100 * cpu[stage] / total_cpu:5.1f}%"
        )
    print(f"{'total':>9}: {total:8.2f} s          CPU {total_cpu:8.2f} s")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(
        f"seconds per model (train+query): "
        f"{(timings['train'] + timings['query']) / config.split.num_models:.3f}"
    )
    aucs = {a: f"{m['auc']['mean']:.3f}" for a, m in metrics.items()}
    print(f"mean AUC: {aucs}")


if __name__ == "__main__":
    main()
