"""LiRA on every reference or on equal counts (`reference_counts: all | equal`): figures and time.

Figures: on the synthetic logits of `attacks.py` (`write_run`: balanced keep matrix, members'
true-class logit 0.5 higher, a per-record difficulty) at each M of --models, every model attacked
in turn against all the others (leave-one-out): mean over targets of the AUC and of the TPR at
FPR 1% and 0.1% (`miakit.evaluate.roc`), for each LiRA variant under both settings; and the mean
AUC on the same generator's logits without membership signal (boost 0), where it should be 0.5.

Time: at --time-models × --time-records, each variant's all-targets scoring (what the attack stage
runs) under `all` and `equal` in turn, in one process after one warm-up of each (the logits then
sit in the page cache), --repeats pairs (all first in every other pair); the ratios equal / all
of wall and of CPU seconds are taken pair by pair, and their medians printed with their ranges.

Usage: python bench/reference_counts.py [--models 8,16,64] [--records N] [--time-models M]
       [--time-records N] [--repeats K] [--time-variants a,b] [--dir DIR (keep and reuse the runs)]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from attacks import write_run
from machine import header

from miakit.attacks import make_attack
from miakit.evaluate.roc import roc_curve
from miakit.signals import Signals
from miakit.store import RunDir

VARIANTS = [
    ("lira-online", {}),
    ("lira-online-fixed", {}),
    ("lira-offline", {}),
    ("lira-offline", {"offline_tail": "two-sided"}),
    ("lira-offline-fixed", {}),
]
COUNTS = ("all", "equal")


def label(name: str, options: dict) -> str:
    return name + (" (two-sided)" if options.get("offline_tail") == "two-sided" else "")


def signals_of(
    root: Path, models: int, records: int, augmentations: int, classes: int, boost: float = 0.5
):
    run = RunDir(root / f"m{models}_n{records}_boost{boost}")
    if not (run.keep.is_file() and run.logits(models - 1).is_file()):
        run.root.mkdir(parents=True, exist_ok=True)
        write_run(run, models, records, augmentations, classes, boost)
    return Signals.from_run(run)


def figures(signals: Signals, name: str, options: dict) -> dict[str, float]:
    targets = range(signals.num_models)
    scores = make_attack(name, options).score_targets(signals, targets, None)
    rocs = [roc_curve(scores[t], signals.keep[t]) for t in targets]
    return {
        "auc": float(np.mean([r.auc() for r in rocs])),
        "tpr@1%": float(np.mean([r.tpr_at_fpr(0.01) for r in rocs])),
        "tpr@0.1%": float(np.mean([r.tpr_at_fpr(0.001) for r in rocs])),
    }


def seconds(signals: Signals, name: str, options: dict) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of scoring every target."""
    attack = make_attack(name, options)
    start, cpu = time.perf_counter(), time.process_time()
    attack.score_targets(signals, range(signals.num_models), None)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="8,16,64")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--augmentations", type=int, default=18)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--time-models", type=int, default=256)
    parser.add_argument("--time-records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--time-variants", default="lira-online,lira-offline,lira-offline-fixed", help="timed"
    )
    parser.add_argument("--dir", help="where to write (or reuse) the synthetic runs")
    args = parser.parse_args()
    print(header("reference_counts.py"))
    shape = (args.augmentations, args.classes)
    with nullcontext(args.dir) if args.dir else tempfile.TemporaryDirectory() as where:
        root = Path(where)
        for models in [int(m) for m in args.models.split(",") if m]:
            signals = signals_of(root, models, args.records, *shape)
            null = signals_of(root, models, args.records, *shape, boost=0.0)
            print(f"\nM={models} N={args.records} A={shape[0]} C={shape[1]}, leave-one-out")
            print(
                f"{'variant':>28} {'counts':>6} {'AUC':>7} {'TPR@1%':>7} {'TPR@0.1%':>8} "
                f"{'AUC without signal':>18}"
            )
            for name, options in VARIANTS:
                for counts in COUNTS:
                    chosen = options | {"reference_counts": counts}
                    f, chance = figures(signals, name, chosen), figures(null, name, chosen)
                    print(
                        f"{label(name, options):>28} {counts:>6} {f['auc']:7.4f} "
                        f"{100 * f['tpr@1%']:6.2f}% {100 * f['tpr@0.1%']:7.3f}% "
                        f"{chance['auc']:18.4f}",
                        flush=True,
                    )
        if not args.repeats:
            return
        signals = signals_of(root, args.time_models, args.time_records, *shape)
        print(
            f"\ntime: M={args.time_models} N={args.time_records} A={shape[0]} C={shape[1]}, all "
            f"targets, leave-one-out; {args.repeats} pairs all/equal after a warm-up of each"
        )
        print(
            f"{'variant':>28} {'all s':>7} {'equal s':>7} {'equal/all':>9} {'range':>11} "
            f"{'CPU-s ratio':>11} {'range':>11}"
        )
        timed_variants = args.time_variants.split(",")
        for name, options in [(n, o) for n, o in VARIANTS if n in timed_variants and not o]:
            runs = {c: options | {"reference_counts": c} for c in COUNTS}
            for c in COUNTS:
                seconds(signals, name, runs[c])  # warm-up
            pairs = []
            for i in range(args.repeats):  # all first in even pairs, equal first in odd ones
                order = COUNTS if i % 2 == 0 else COUNTS[::-1]
                timed = {c: seconds(signals, name, runs[c]) for c in order}
                pairs.append((timed["all"], timed["equal"]))
            wall = [b[0] / a[0] for a, b in pairs]
            cpu = [b[1] / a[1] for a, b in pairs]
            print(
                f"{label(name, options):>28} {np.median([a[0] for a, _ in pairs]):7.2f} "
                f"{np.median([b[0] for _, b in pairs]):7.2f} {np.median(wall):9.3f} "
                f"{min(wall):5.3f}-{max(wall):.3f} {np.median(cpu):11.3f} "
                f"{min(cpu):5.3f}-{max(cpu):.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
