"""`miakit.score` against the CLI's attack stage, on the same run of brought-in models.

Writes synthetic logits as a run stores them (`bench/attacks.py`'s `write_run`: models/<m>/
logits.npy float32 [N, A, C], keep.npy, labels.npy), then times, each in a fresh process and in
turn (CLI, API, CLI, API, …):

- cli: the attack stage `miakit attack RUN --attacks NAME` runs (`pipeline.attack`, its scores
  removed first so that it scores), from the call to the written scores/<NAME>.npy;
- api: `miakit.score(NAME, logits, labels, keep)` on the same files memory-mapped (a list of M
  `np.load(..., mmap_mode="r")` arrays), from the first load to the returned scores.

Both exclude the interpreter's start and imports. Prints each pair's seconds and API / CLI
ratio, the median ratio, and whether the scores are identical.

Usage: python bench/api_score.py [--models M --records N --augmentations A --classes C]
       [--attacks a,b] [--repeats R] [--dir DIR (keep the synthetic run there and reuse it)]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from attacks import write_run
from machine import header

from miakit.store import RunDir


def measure(run_dir: str, attack: str, how: str) -> dict:
    """Seconds of one scoring in this process, `how` = cli or api; the scores' file for api."""
    import miakit
    from miakit import pipeline

    run = RunDir(run_dir)
    if how == "cli":
        run.scores(attack).unlink(missing_ok=True)
        start = time.perf_counter()
        pipeline.attack(run, pipeline.run_config(run), [attack])
        seconds = time.perf_counter() - start
        return {"seconds": seconds}
    start = time.perf_counter()
    keep = np.load(run.keep)
    logits = [np.load(run.logits(m), mmap_mode="r") for m in range(len(keep))]
    scores = miakit.score(attack, logits, np.load(run.labels), keep)
    seconds = time.perf_counter() - start
    np.save(Path(run_dir) / f"api_{attack}.npy", scores)
    return {"seconds": seconds}


def _child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--augmentations", type=int, default=18)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--attacks", default="lira-online,rmia")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", help="where to write (or reuse) the synthetic run")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child: one attack
    parser.add_argument("--how", help=argparse.SUPPRESS)  # child: cli or api
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.dir, args.measure, args.how)))
        return
    shape = (args.models, args.records, args.augmentations, args.classes)
    print(header("api_score.py"))
    with nullcontext(args.dir) if args.dir else tempfile.TemporaryDirectory() as run_dir:
        run = RunDir(run_dir)
        if not (run.keep.is_file() and run.logits(args.models - 1).is_file()):
            write_run(run, *shape)
        print(f"M={shape[0]} N={shape[1]} A={shape[2]} C={shape[3]}, all targets, leave-one-out")
        print(f"{'attack':>12} {'pair':>4} {'cli s':>8} {'api s':>8} {'api/cli':>8}")
        for attack in [a for a in args.attacks.split(",") if a]:
            ratios = []
            for pair in range(args.repeats):
                cli = _child("--dir", run_dir, "--measure", attack, "--how", "cli")["seconds"]
                api = _child("--dir", run_dir, "--measure", attack, "--how", "api")["seconds"]
                ratios.append(api / cli)
                print(f"{attack:>12} {pair:>4} {cli:8.2f} {api:8.2f} {api / cli:8.3f}", flush=True)
            same = np.array_equal(
                np.load(run.scores(attack)), np.load(Path(run_dir) / f"api_{attack}.npy")
            )
            print(
                f"{attack:>12} median api/cli {np.median(ratios):.3f} "
                f"(min {min(ratios):.3f}, max {max(ratios):.3f}); scores identical: {same}"
            )


if __name__ == "__main__":
    main()
