"""Scoring time and peak memory of the reference-model attacks at CIFAR-10 scale, for one target.

Writes synthetic logits as a run stores them (models/<m>/logits.npy, float32 [N, A, C], keep.npy,
labels.npy), memory-maps them through `Signals.from_run`, and scores target 0 against the other
M − 1 models with each attack in a fresh process. Peak memory is the largest anonymous resident set
(RssAnon, sampled every 10 ms) above the process's baseline: memory-mapped logits are page cache,
which the kernel reclaims, so they are not counted.

Usage: python bench/attacks.py [--small] [--models M --records N --augmentations A --classes C]
       [--dir DIR (keep the synthetic run there and reuse it)] [--attacks a,b,…]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from machine import header
from scipy.stats import rankdata

from miakit.attacks import make_attack
from miakit.signals import Signals
from miakit.store import RunDir, save_npy

ATTACKS = [
    "lira-online",
    "lira-online-fixed",
    "lira-offline",
    "lira-offline-fixed",
    "lira-global",
    "rmia",
    "attack-r",
]


def write_run(run: RunDir, models: int, records: int, augmentations: int, classes: int) -> None:
    """A balanced keep matrix and logits where members' true-class logit is 0.5 higher."""
    rng = np.random.default_rng(0)
    keep = np.argsort(rng.random((models, records)), axis=0) < models // 2
    labels = rng.integers(0, classes, records)
    save_npy(run.keep, keep)
    save_npy(run.labels, labels)
    difficulty = rng.normal(0, 2, records).astype(np.float32)
    for m in range(models):
        logits = rng.standard_normal((records, augmentations, classes), dtype=np.float32)
        boost = difficulty + np.where(keep[m], 0.5, 0.0).astype(np.float32)
        logits[np.arange(records), :, labels] += boost[:, None]
        save_npy(run.logits(m), logits)


def _anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def measure(run_dir: str, attack: str) -> dict:
    """Score target 0 once; seconds and peak anonymous memory (MiB) above the baseline."""
    signals = Signals.from_run(RunDir(run_dir))
    instance = make_attack(attack)
    baseline = _anon_kib()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], _anon_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    scores = instance.score(signals, 0, list(range(1, signals.num_models)))
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    auc = _auc(scores, signals.keep[0])
    return {
        "attack": attack,
        "seconds": seconds,
        "peak_mib": (peak[0] - baseline) / 1024,
        "auc": auc,
    }


def _auc(scores: np.ndarray, members: np.ndarray) -> float:
    ranks = rankdata(scores)
    pos = int(members.sum())
    return float((ranks[members].sum() - pos * (pos + 1) / 2) / (pos * (members.size - pos)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="M=16, N=2000: a quick check")
    parser.add_argument("--models", type=int, default=256)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--augmentations", type=int, default=18)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dir", help="where to write (or reuse) the synthetic run")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: one attack
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.dir, args.measure)))
        return
    if args.small:
        args.models, args.records = 16, 2000
    shape = (args.models, args.records, args.augmentations, args.classes)
    with nullcontext(args.dir) if args.dir else tempfile.TemporaryDirectory() as run_dir:
        run = RunDir(run_dir)
        start = time.perf_counter()
        if not (run.keep.is_file() and run.logits(args.models - 1).is_file()):
            write_run(run, *shape)
        written = time.perf_counter() - start
        print(header("attacks.py"))
        print(f"M={shape[0]} N={shape[1]} A={shape[2]} C={shape[3]}, target 0 vs {shape[0] - 1}")
        print(f"synthetic logits written or found in {written:.1f} s")
        print(f"{'attack':>20} {'seconds':>9} {'peak MiB':>9} {'AUC':>6}")
        for attack in args.attacks.split(","):
            child = subprocess.run(
                [sys.executable, __file__, "--dir", run_dir, "--measure", attack],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"{attack:>20} {r['seconds']:9.2f} {r['peak_mib']:9.0f} {r['auc']:6.3f}")


if __name__ == "__main__":
    main()
