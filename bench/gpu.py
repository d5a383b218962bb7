"""Every GPU figure of the device check, in one process and within a time budget.

The device tool lends a GPU for minutes, so one prepared call measures everything, in this order
(a phase is skipped, and says so, when the budget left is below its estimate):

1. the fast net (`configs/fastnet_cifar10.yaml`) trained on the full training split, eager and
   then compiled: test accuracy (the image alone, and the mean over the 18 query views), seconds
   per model, models per GPU-hour, the compilation's one-off cost, and the ratio to the floor
   (training FLOPs over the measured bf16 matmul rate);
2. the loss-trace overhead of the fast net on a random half with the whole split traced, with a
   row every epoch and every 4th;
3. LiRA with 16 fast nets through miakit's own pipeline (plan → train → query → attack →
   evaluate → report in this process, so the compiled graph is reused): every record IN for 8
   models (the LiRA code's random halves), A = 2 query views, every model a target against the
   other 15, the five LiRA variants beside the published 16-model table;
4. batched packing: the digits MLPs and the small CNN trained one at a time and stacked
   (train.batched), as models per GPU-hour;
5. an epoch sweep of the fast net where phase 1 fell short of 93%.

Run on the device tool after `bash bench/gpu_prepare.sh` here (see that script's header);
`--smoke` runs every phase at toy sizes on any device in seconds (tests/test_bench_gpu.py).
Usage: python bench/gpu.py [--budget 470] [--out DIR] [--dataset cifar10-jpeg] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from machine import header
from train import (
    FASTNET,
    EpochClock,
    digits_models,
    make,
    matmul_rate,
    synchronize,
    trace_overhead,
    training_flops,
)

from miakit import pipeline
from miakit.config import AuditConfig, TrainConfig, load_config
from miakit.data import balanced_keep, load_pool
from miakit.models import build_model
from miakit.seeding import derive_seed, rng
from miakit.store import RunDir
from miakit.train.batched import train_batched
from miakit.train.inputs import Normalization
from miakit.train.traces import CHUNK
from miakit.train.trainer import resolve_device, train_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LIRA_VARIANTS = [
    "lira-online",
    "lira-online-fixed",
    "lira-offline",
    "lira-offline-fixed",
    "lira-global",
]
#: Carlini et al. 2022 (LiRA), the 16-model table of the LiRA README: AUC, TPR at 0.1% FPR
PUBLISHED_16 = {
    "lira-online": (0.668, 0.017),
    "lira-online-fixed": (0.686, 0.059),
    "lira-offline": (0.549, 0.013),
    "lira-offline-fixed": (0.555, 0.030),
    "lira-global": (0.592, 0.0009),
}
GOAL_ACCURACY = 0.93


class Budget:
    """Seconds left of the call; a phase whose estimate exceeds them is skipped, with a line."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()

    def allows(self, phase: str, estimate: float) -> bool:
        if self.left() >= estimate:
            return True
        print(
            f"\n{phase}: SKIPPED ({self.left():.0f} s of the budget left, needs ~{estimate:.0f} s)"
        )
        return False


def run_phase(name: str, body: Callable[[], None]) -> None:
    """A failing phase prints its traceback and the next one still runs."""
    print(f"\n## {name}", flush=True)
    start = time.perf_counter()
    try:
        body()
    except Exception:  # a device check reports every phase it can, whatever broke before
        traceback.print_exc(file=sys.stdout)
        print(f"{name}: FAILED (above)")
    print(f"({name}: {time.perf_counter() - start:.1f} s)", flush=True)


class Cifar:
    """The pool on the device, loaded once for every phase."""

    def __init__(self, dataset: str, device: torch.device, records: int | None) -> None:
        pool = load_pool(dataset, download=False)
        keep = slice(None) if records is None else slice(0, records)
        self.norm = Normalization(pool.mean, pool.std)
        self.x = torch.from_numpy(pool.x[keep]).to(device)
        self.y = torch.from_numpy(pool.y[keep]).to(device)
        self.x_test = torch.from_numpy(pool.x_test[keep]).to(device)
        self.y_test = pool.y_test[keep]
        self.device = device

    def halves(self, count: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        n = len(self.y)
        return [
            torch.randperm(n, generator=generator)[: n // 2].to(self.device) for _ in range(count)
        ]


def fastnet_once(data: Cifar, cfg: TrainConfig, seed: int = 1) -> tuple[float, str]:
    """Train one fast net on the whole split: (seconds, test accuracies after the last epoch)."""
    torch.manual_seed(seed)
    model = make("fastnet", data.device)
    clock = EpochClock(model, data.x_test, data.y_test, data.norm, data.device, cfg.epochs)
    train_model(
        model, data.x, data.y, cfg, seed, augment_seed=seed + 1, norm=data.norm, on_epoch=clock
    )
    return sum(clock.seconds), clock.accuracies


def compile_once(data: Cifar, cfg: TrainConfig) -> float:
    """Compile the training and evaluation graphs on a few batches (once per process)."""
    start = time.perf_counter()
    few = slice(0, 2 * cfg.batch_size + 17)
    torch.manual_seed(0)
    train_model(
        make("fastnet", data.device),
        data.x[few],
        data.y[few],
        cfg.model_copy(update={"epochs": 1}),
        0,
        augment_seed=0,
        norm=data.norm,
        trace_on=(data.x[: CHUNK + 100], data.y[: CHUNK + 100]),  # eval graph: chunk, remainder
    )
    synchronize(data.device)
    return time.perf_counter() - start


def fastnet_figures(data: Cifar, cfg: TrainConfig, results: dict) -> None:
    floor = training_flops("fastnet", len(data.y), cfg.epochs, data.device) / matmul_rate(
        data.device
    )
    kind = "bf16" if data.device.type == "cuda" else "float32"
    print(f"floor: {floor:.2f} s per model (training FLOPs at the measured {kind} matmul rate)")
    for compiled in (False, True) if data.device.type == "cuda" else (False,):
        run_cfg = cfg.model_copy(update={"compile": compiled})
        if compiled:
            results["compile_seconds"] = compile_once(data, run_cfg)
            print(f"compilation (once per process): {results['compile_seconds']:.1f} s")
        seconds, accuracies = fastnet_once(data, run_cfg)
        label = "compiled" if compiled else "eager"
        results[label] = {"seconds": seconds, "accuracy": accuracies}
        print(
            f"{label}: {seconds:.1f} s per model, {3600 / seconds:.0f} models per GPU-hour, "
            f"{seconds / floor:.1f}x the floor; test accuracy {accuracies}"
        )


class LiraRun:
    """16 fast nets trained and queried by miakit's pipeline in this process (the compiled graph
    reused), the five LiRA variants scored in parallel processes, every model a target."""

    def __init__(
        self, data: Cifar, dataset: str, work: Path, smoke: bool, extra: list[str]
    ) -> None:
        overrides = [
            f"data.name={dataset}",
            "split.num_models=16",
            "evaluate.targets=null",
            "query.augmentations=2",
            f"attacks=[{', '.join(LIRA_VARIANTS)}]",
        ]
        if smoke:  # the toy pool and test split as the user's own data, 4 models, 1 epoch
            toy = work / "smoke.npz"
            toy.parent.mkdir(parents=True, exist_ok=True)
            arrays = {"x": data.x, "y": data.y, "x_test": data.x_test}
            np.savez(toy, **{k: v.cpu().numpy() for k, v in arrays.items()}, y_test=data.y_test)
            overrides += ["data.name=user", f"data.path={toy}", "split.num_models=4"]
            overrides += ["train.epochs=1"]
        if not torch.cuda.is_available():
            overrides.append("train.compile=false")
        self.config = load_config(CONFIGS / "fastnet_cifar10.yaml", [*overrides, *extra])
        self.run = RunDir(work / "lira16")

    def figures(self, out: Path) -> None:
        config, run, models = self.config, self.run, self.config.split.num_models
        tick = time.perf_counter()
        planned = pipeline.plan(config, run)
        pipeline.train(planned, run)
        trained = time.perf_counter()
        pipeline.query(planned, run)
        queried = time.perf_counter()
        attack_in_parallel(run.root, LIRA_VARIANTS)
        attacked = time.perf_counter()
        metrics = pipeline.evaluate(run, config)
        done = time.perf_counter()
        print(
            f"train {trained - tick:.1f} s ({models} models), query {queried - trained:.1f} s, "
            f"attack {attacked - queried:.1f} s (in parallel), evaluate {done - attacked:.1f} s"
        )
        out.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.json", "metrics.csv"):
            shutil.copyfile(run.root / name, out / f"lira16_{name}")
        seconds = np.mean(
            [json.loads(run.meta(m).read_text())["train_seconds"] for m in range(models)]
        )
        print(f"training: {seconds:.1f} s per model (mean, half the split each)")
        print(f"{'attack':>20} {'AUC':>13} {'published':>9} {'TPR@0.1%':>13} {'published':>9}")
        for attack in LIRA_VARIANTS:
            auc, tpr = metrics[attack]["auc"], metrics[attack]["tpr@fpr=0.001"]
            paper_auc, paper_tpr = PUBLISHED_16[attack]
            measured = (
                f"{100 * tpr['mean']:5.2f}%±{100 * tpr['std']:4.2f}"
                if tpr["mean"] is not None
                else f"{'n/m':>13}"  # fewer than 1,000 non-members per target (toy sizes)
            )
            print(
                f"{attack:>20} {auc['mean']:.3f}±{auc['std']:.3f} {paper_auc:9.3f} "
                f"{measured} {100 * paper_tpr:8.2f}%"
            )
        shutil.copyfile(pipeline.report(run), out / "lira16_report.html")


def attack_in_parallel(root: Path, attacks: list[str]) -> None:
    """`miakit attack RUN --attacks a` for each attack at once: each scores every target."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "miakit", "attack", str(root), "--attacks", attack],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for attack in attacks
    ]
    for attack, child in zip(attacks, children, strict=True):
        output, _ = child.communicate()
        if child.returncode:
            raise RuntimeError(f"miakit attack --attacks {attack} failed:\n{output}")


def trace_figures(data: Cifar, cfg: TrainConfig) -> None:
    rows = data.halves(1)
    for every in (1, 4):
        traced = cfg.model_copy(update={"trace_every": every})
        print(f"trace_every {every}:", end="")
        trace_overhead(data.x, data.y, rows, traced, [0], data.device, data.norm, "fastnet")


def packing(data: Cifar, device: torch.device, smoke: bool) -> None:
    """Models per GPU-hour one at a time and stacked: the digits MLPs and the small CNN."""
    digits_cfg = AuditConfig()
    count, epochs = (2, 1) if smoke else (32, digits_cfg.train.epochs)
    pool = load_pool("digits")
    keep = balanced_keep(count, pool.num_records, rng(digits_cfg.seed, "keep"))
    x, y = torch.from_numpy(pool.x).to(device), torch.from_numpy(pool.y).to(device)
    rows = [torch.from_numpy(np.flatnonzero(k)).to(device) for k in keep]
    cfg = digits_cfg.train.model_copy(update={"epochs": epochs})
    compare_packing(
        f"digits MLP (hidden {digits_cfg.model.hidden}, Adam, {epochs} epochs, "
        f"{len(rows[0])} records)",
        lambda: digits_models(digits_cfg, count, device),
        x,
        y,
        rows,
        cfg,
        None,
    )
    cnn_count, cnn_epochs = (2, 1) if smoke else (8, 5)
    cnn_cfg = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=cnn_epochs, batch_size=256)
    cnn_rows = data.halves(cnn_count)

    def cnns() -> list[torch.nn.Module]:
        torch.manual_seed(0)
        return [build_model("cnn", (32, 32, 3), 10).to(device) for _ in range(cnn_count)]

    compare_packing(
        f"small CNN (SGD, {cnn_epochs} epochs, {len(cnn_rows[0]):,} CIFAR-10 images)",
        cnns,
        data.x,
        data.y,
        cnn_rows,
        cnn_cfg,
        data.norm,
    )


def compare_packing(label, models_fn, x, y, rows, cfg: TrainConfig, norm) -> None:
    seeds = [derive_seed(0, "order", m) for m in range(len(rows))]
    warm = models_fn()[:2]  # kernels and lazy imports outside the timings
    short = cfg.model_copy(update={"epochs": 1})
    train_model(warm[0], x[rows[0]], y[rows[0]], short, 0, norm=norm)
    train_batched(warm, x, y, rows[:2], short, seeds[:2], norm=norm)
    alone = models_fn()
    synchronize(x.device)
    start = time.perf_counter()
    for m, model in enumerate(alone):
        train_model(model, x[rows[m]], y[rows[m]], cfg, seeds[m], norm=norm)
    synchronize(x.device)
    one_by_one = time.perf_counter() - start
    stacked = models_fn()
    start = time.perf_counter()
    train_batched(stacked, x, y, rows, cfg, seeds, norm=norm)
    synchronize(x.device)
    batched = time.perf_counter() - start
    per_hour = 3600 * len(rows)
    print(
        f"{label}, {len(rows)} models: one at a time {one_by_one:.1f} s "
        f"({per_hour / one_by_one:,.0f} models per GPU-hour), stacked {batched:.1f} s "
        f"({per_hour / batched:,.0f} per GPU-hour): {one_by_one / batched:.1f}x"
    )


def sweep(data: Cifar, cfg: TrainConfig, epochs: int) -> None:
    """The fast net with more epochs, its warm-up the same share of them."""
    warmup = cfg.warmup_epochs * epochs / cfg.epochs
    swept = cfg.model_copy(update={"epochs": epochs, "warmup_epochs": warmup})
    seconds, accuracies = fastnet_once(data, swept)
    print(f"{epochs} epochs: {seconds:.1f} s, test accuracy {accuracies}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=470, help="seconds for all phases")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", "runs/gpu")),
        help="where the LiRA run's metrics.json, metrics.csv and report.html are copied",
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path("/tmp/miakit-gpu"), help="run folder")
    parser.add_argument("--dataset", default="cifar10-jpeg", help="cifar10 or cifar10-jpeg")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks that it runs")
    parser.add_argument(
        "--lira-set", action="append", default=[], help="config override of phase 3's run"
    )
    parser.add_argument("--sweep", default="16,20", help="epochs of the sweep (phase 5)")
    parser.add_argument(
        "--phases", default="1,2,3,4,5", help="which phases to run (a rerun of some: 1,3)"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    budget = Budget(float("inf") if args.smoke else args.budget)
    print(header("gpu.py"))
    print(torch.cuda.get_device_name() if device.type == "cuda" else "no GPU: measured on the CPU")
    start = time.perf_counter()
    data = Cifar(args.dataset, device, 200 if args.smoke else None)
    print(
        f"{args.dataset}: {len(data.y):,} training and {len(data.y_test):,} test images on "
        f"{device}, loaded in {time.perf_counter() - start:.1f} s"
    )
    cfg = FASTNET.model_copy(update={"epochs": 1}) if args.smoke else FASTNET
    results: dict = {}
    chosen = {int(p) for p in args.phases.split(",")}
    if 1 in chosen:
        run_phase("1. fast net, eager and compiled", lambda: fastnet_figures(data, cfg, results))
    per_model = results.get("compiled", results.get("eager", {})).get("seconds", 60.0)
    if 2 in chosen and budget.allows("2. loss-trace overhead", 2.5 * per_model):
        run_phase("2. loss-trace overhead", lambda: trace_figures(data, cfg))
    if 3 in chosen and budget.allows("3. LiRA, 16 fast nets", 8 * per_model + 100):
        lira = LiraRun(data, args.dataset, args.work, args.smoke, args.lira_set)
        run_phase("3. LiRA, 16 fast nets", lambda: lira.figures(args.out))
    if 4 in chosen and budget.allows("4. batched packing", 90):
        run_phase("4. batched packing", lambda: packing(data, device, args.smoke))
    accuracy = results.get("compiled", results.get("eager", {})).get("accuracy", "")
    short = 5 in chosen and (not accuracy or float(accuracy.split()[0]) < GOAL_ACCURACY)
    for epochs in [2] if args.smoke else [int(e) for e in args.sweep.split(",")]:
        estimate = per_model * epochs / cfg.epochs + 5
        if short and budget.allows(f"5. sweep, {epochs} epochs", estimate):
            run_phase(f"5. sweep, {epochs} epochs", lambda e=epochs: sweep(data, cfg, e))
    print(f"\nbudget left: {budget.left():.0f} s")


if __name__ == "__main__":
    main()
