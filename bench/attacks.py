"""Scoring time and peak memory of the reference-model attacks at CIFAR-10 scale.

Writes synthetic logits as a run stores them (models/<m>/logits.npy, float32 [N, A, C], keep.npy,
labels.npy), memory-maps them through `Signals.from_run`, and scores with each attack in a fresh
process: target 0 against the other M − 1 models, or with --all-targets every model in turn
against all the others (leave-one-out). Peak memory is the largest anonymous resident set (RssAnon,
sampled every 10 ms) above the process's baseline: memory-mapped logits are page cache, which the
kernel reclaims, so they are not counted.

--all-targets also measures, on a second synthetic run of --ratio-records records (same M, A, C),
the all-targets engine against a straightforward per-target NumPy implementation of the same
formulas (`straightforward` below: φ or the signal of every model, NaN-masked IN/OUT,
np.nanmedian / np.nanstd / scipy's trim_mean, as the LiRA authors' plot.py does per target), timed
on --ratio-targets targets and compared per target.

Usage: python bench/attacks.py [--small] [--models M --records N --augmentations A --classes C]
       [--dir DIR (keep the synthetic run there and reuse it)] [--attacks a,b,…]
       [--all-targets [--ratio-records N2 --ratio-targets K --ratio-dir DIR2 --ratio-attacks …]]
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
    "rmia-offline",
    "attack-r",
    "attack-p",
]
#: Attacks with a straightforward per-target implementation below.
RATIO_ATTACKS = ["lira-online", "lira-offline", "rmia", "rmia-offline"]


def write_run(
    run: RunDir, models: int, records: int, augmentations: int, classes: int, boost: float = 0.5
) -> None:
    """A balanced keep matrix and logits where members' true-class logit is `boost` higher."""
    rng = np.random.default_rng(0)
    keep = np.argsort(rng.random((models, records)), axis=0) < models // 2
    labels = rng.integers(0, classes, records)
    save_npy(run.keep, keep)
    save_npy(run.labels, labels)
    difficulty = rng.normal(0, 2, records).astype(np.float32)
    for m in range(models):
        logits = rng.standard_normal((records, augmentations, classes), dtype=np.float32)
        shift = difficulty + np.where(keep[m], boost, 0.0).astype(np.float32)
        logits[np.arange(records), :, labels] += shift[:, None]
        save_npy(run.logits(m), logits)


def _anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def _peak_sampler():
    """Start sampling RssAnon; the returned function stops and gives the peak MiB above now."""
    baseline = _anon_kib()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], _anon_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def stop() -> float:
        done.set()
        sampler.join()
        return (max(peak[0], _anon_kib()) - baseline) / 1024

    return stop


def measure(run_dir: str, attack: str, all_targets: bool, count: int | None = None) -> dict:
    """Score target 0, or every target (the first `count` of them, each still against all the
    other models); seconds (wall and CPU, all threads), and peak anonymous memory (MiB) above the
    baseline. With all targets, the scores are kept for `--evaluate` in
    <run_dir>/bench_scores/<attack>.npy."""
    signals = Signals.from_run(RunDir(run_dir))
    instance = make_attack(attack)
    targets = list(range(count or signals.num_models)) if all_targets else [0]
    stop = _peak_sampler()
    start, cpu = time.perf_counter(), time.process_time()
    scores = instance.score_targets(signals, targets, None)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    peak = stop()
    if all_targets and count is None:
        np.save(_scores_path(run_dir, attack), scores)
    auc = float(
        np.mean([_auc(row, signals.keep[t]) for row, t in zip(scores, targets, strict=True)])
    )
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mib": peak, "auc": auc}


def _scores_path(run_dir: str, attack: str) -> Path:
    folder = Path(run_dir) / "bench_scores"
    folder.mkdir(exist_ok=True)
    return folder / f"{attack}.npy"


def measure_evaluate(run_dir: str, attack: str) -> dict:
    """What `miakit evaluate` does per attack, on the all-targets scores [M, N] `measure` kept:
    metrics with intervals and realistic figures (`summarize`, the default FPRs), the ROC plot,
    and the tables (thresholds, vulnerability, calibration from every target's logits)."""
    from miakit.config import EvaluateConfig
    from miakit.evaluate.metrics import summarize
    from miakit.evaluate.tables import write_evaluation_tables
    from miakit.report.plots import plot_roc

    run = RunDir(run_dir)
    scores = np.load(_scores_path(run_dir, attack))
    keep = np.load(run.keep)
    targets = list(range(scores.shape[0]))
    fprs = EvaluateConfig().fprs
    stop = _peak_sampler()
    start, cpu = time.perf_counter(), time.process_time()
    summarize(scores, keep, targets, fprs)
    plot_roc(Path(run_dir) / "bench_scores" / f"roc_{attack}.png", attack, scores, keep, targets)
    write_evaluation_tables(run, {attack: scores}, fprs)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mib": stop(), "auc": np.nan}


def straightforward(signals: Signals, attack: str, target: int) -> np.ndarray:
    """One target in plain vectorised NumPy, the way per-target code is usually written: read
    every model's logits, transform, mask IN/OUT references with NaN, nanmedian/nanstd (LiRA) or
    scipy's trim_mean (RMIA's p(x)), then the paper's formula (RMIA: the same exact counting)."""
    from scipy.stats import norm, trim_mean

    from miakit.attacks.rmia import RmiaConfig, relative_scores
    from miakit.signals import log_odds, taylor_soft_margin

    refs = [m for m in range(signals.num_models) if m != target]
    n, a = signals.num_records, signals.num_augmentations
    out, ratio = np.empty(n), np.empty((n, a))
    for chunk in signals.record_chunks(signals.num_models):
        logits = signals.read_logits(range(signals.num_models), chunk)
        labels = signals.labels[chunk]
        if attack == "rmia":
            cfg = RmiaConfig()
            s = taylor_soft_margin(logits, labels, cfg.temperature, cfg.margin, cfg.taylor_order)
            ratio[chunk] = s[target] / trim_mean(s[refs], cfg.trim, axis=0)
            continue
        if attack == "rmia-offline":  # trimmed mean of each record's OUT references, a = 0.3
            cfg = RmiaConfig()
            s = taylor_soft_margin(logits, labels, cfg.temperature, cfg.margin, cfg.taylor_order)
            outs = ~signals.keep[refs, chunk]
            ordered = np.sort(np.where(outs[..., None], s[refs], np.nan), axis=0)  # NaN last
            count = outs.sum(axis=0)[:, None]
            cut = np.floor(cfg.trim * count)
            rank = np.arange(len(refs))[:, None, None]
            inside = (rank >= cut) & (rank < count - cut)
            p_out = np.where(inside, ordered, 0.0).sum(axis=0) / (count - 2 * cut)
            ratio[chunk] = s[target] / (1.3 / 2 * p_out + 0.7 / 2)
            continue
        phi = log_odds(logits, labels)
        keep = signals.keep[refs, chunk][..., None]
        outs = np.where(keep, np.nan, phi[refs])
        mu_out, sd_out = np.nanmedian(outs, axis=0), np.nanstd(outs, axis=0)
        if attack == "lira-offline":
            out[chunk] = norm.logcdf(phi[target], mu_out, sd_out).mean(axis=-1)
            continue
        ins = np.where(keep, phi[refs], np.nan)
        mu_in, sd_in = np.nanmedian(ins, axis=0), np.nanstd(ins, axis=0)
        llr = norm.logpdf(phi[target], mu_in, sd_in) - norm.logpdf(phi[target], mu_out, sd_out)
        out[chunk] = llr.mean(axis=-1)
    if attack.startswith("rmia"):
        population = np.flatnonzero(~signals.keep[target])
        out = relative_scores(ratio, ratio[population], RmiaConfig().gamma)
    return out


def measure_ratio(run_dir: str, attack: str, count: int) -> dict:
    """Seconds per target: the engine over all targets, and `straightforward` on `count` targets;
    the largest difference of their scores on those targets."""
    signals = Signals.from_run(RunDir(run_dir))
    targets = list(range(signals.num_models))
    start = time.perf_counter()
    cpu = time.process_time()
    engine = make_attack(attack).score_targets(signals, targets, None)
    engine_seconds, engine_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    plain = [straightforward(signals, attack, t) for t in range(count)]
    plain_seconds, plain_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "attack": attack,
        "engine_per_target": engine_seconds / len(targets),
        "plain_per_target": plain_seconds / count,
        "engine_cpu_per_target": engine_cpu / len(targets),
        "plain_cpu_per_target": plain_cpu / count,
        "max_difference": float(np.max(np.abs(np.stack(plain) - engine[:count]))),
    }


def _auc(scores: np.ndarray, members: np.ndarray) -> float:
    ranks = rankdata(scores)
    pos = int(members.sum())
    return float((ranks[members].sum() - pos * (pos + 1) / 2) / (pos * (members.size - pos)))


def _child(*args: str) -> dict:
    child = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="M=16, N=2000: a quick check")
    parser.add_argument("--models", type=int, default=256)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--augmentations", type=int, default=18)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dir", help="where to write (or reuse) the synthetic run")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--all-targets", action="store_true", help="leave-one-out, every target")
    parser.add_argument(
        "--targets", type=int, help="with --all-targets: only the first K targets (leave-one-out)"
    )
    parser.add_argument("--ratio-records", type=int, default=10_000)
    parser.add_argument("--ratio-targets", type=int, default=2)
    parser.add_argument("--ratio-dir", help="where to write (or reuse) the run of the ratio")
    parser.add_argument("--ratio-attacks", default=",".join(RATIO_ATTACKS))
    parser.add_argument(
        "--evaluate", default="lira-online", help="attack whose all-targets scores to evaluate"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: one attack
    parser.add_argument("--measure-evaluate", help=argparse.SUPPRESS)  # child: evaluate
    parser.add_argument("--ratio", help=argparse.SUPPRESS)  # child process: one ratio
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.dir, args.measure, args.all_targets, args.targets)))
        return
    if args.measure_evaluate:
        print(json.dumps(measure_evaluate(args.dir, args.measure_evaluate)))
        return
    if args.ratio:
        print(json.dumps(measure_ratio(args.ratio_dir, args.ratio, args.ratio_targets)))
        return
    if args.small:
        args.models, args.records, args.ratio_records = 16, 2000, 1000
    shape = (args.models, args.records, args.augmentations, args.classes)
    print(header("attacks.py"))
    with (
        nullcontext(args.dir) if args.dir else tempfile.TemporaryDirectory() as run_dir,
        nullcontext(args.ratio_dir)
        if args.ratio_dir
        else tempfile.TemporaryDirectory() as ratio_dir,
    ):
        run = RunDir(run_dir)
        start = time.perf_counter()
        if not (run.keep.is_file() and run.logits(args.models - 1).is_file()):
            write_run(run, *shape)
        written = time.perf_counter() - start
        who = (
            f"all {shape[0]} targets, leave-one-out"
            if args.all_targets
            else (f"target 0 vs {shape[0] - 1}")
        )
        print(f"M={shape[0]} N={shape[1]} A={shape[2]} C={shape[3]}, {who}")
        print(f"synthetic logits written or found in {written:.1f} s")
        flags = ["--all-targets"] if args.all_targets else []
        if args.all_targets and args.targets:
            flags += ["--targets", str(args.targets)]
            print(f"only the first {args.targets} targets, each against all other models")
        print(f"{'attack':>20} {'seconds':>9} {'CPU-s':>9} {'peak MiB':>9} {'AUC':>6}")
        attacks = [a for a in args.attacks.split(",") if a]
        for attack in attacks:
            r = _child("--dir", run_dir, "--measure", attack, *flags)
            print(
                f"{attack:>20} {r['seconds']:9.2f} {r['cpu_seconds']:9.1f} {r['peak_mib']:9.0f} "
                f"{r['auc']:6.3f}",
                flush=True,
            )
        ratio_attacks = [a for a in args.ratio_attacks.split(",") if a]
        if not args.all_targets:
            return
        if args.evaluate and (Path(run_dir) / "bench_scores" / f"{args.evaluate}.npy").is_file():
            r = _child("--dir", run_dir, "--measure-evaluate", args.evaluate)
            label = f"evaluate {args.evaluate}"
            print(
                f"{label:>20} {r['seconds']:9.2f} {r['cpu_seconds']:9.1f} {r['peak_mib']:9.0f}",
                flush=True,
            )
        if not ratio_attacks:
            return
        small = (shape[0], args.ratio_records, *shape[2:])
        ratio_run = RunDir(ratio_dir)
        if not (ratio_run.keep.is_file() and ratio_run.logits(args.models - 1).is_file()):
            write_run(ratio_run, *small)
        print(
            f"ratio at M={small[0]} N={small[1]} A={small[2]} C={small[3]}: seconds per target, "
            f"engine over all targets vs straightforward per-target NumPy on {args.ratio_targets}"
        )
        print(
            f"{'attack':>20} {'engine':>9} {'plain':>9} {'ratio':>7} {'CPU-s eng':>9} "
            f"{'CPU-s pl':>9} {'ratio':>7} {'max diff':>9}"
        )
        for attack in ratio_attacks:
            r = _child(
                "--ratio-dir", ratio_dir, "--ratio", attack,
                "--ratio-targets", str(args.ratio_targets),
            )  # fmt: skip
            ratio = r["plain_per_target"] / r["engine_per_target"]
            cpu_ratio = r["plain_cpu_per_target"] / r["engine_cpu_per_target"]
            print(
                f"{attack:>20} {r['engine_per_target']:9.3f} {r['plain_per_target']:9.3f} "
                f"{ratio:6.1f}x {r['engine_cpu_per_target']:9.3f} "
                f"{r['plain_cpu_per_target']:9.3f} {cpu_ratio:6.1f}x {r['max_difference']:9.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
