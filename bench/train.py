"""Training speed, measured as ratios in one run so that they hold whatever the machine's load.

CPU (always): the default digits audit's 64 MLPs (Adam, 60 epochs) trained one by one and then
batched (train.batched), and the overhead of recording loss traces. CUDA (when present): seconds
per CIFAR-10 model and models per GPU-hour for the fast net and WideResNet-28-2, test accuracy,
the ratio to the FLOP floor (training FLOPs over the measured bf16 matmul rate), and the trace
overhead at CIFAR scale.
Usage: python bench/train.py [--models 64] [--epochs 60] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from machine import header
from torch.utils.flop_counter import FlopCounterMode

from miakit.config import AuditConfig, TrainConfig
from miakit.data import balanced_keep, load_pool
from miakit.models import build_model
from miakit.seeding import derive_seed, rng
from miakit.train.batched import train_batched
from miakit.train.inputs import Normalization, model_inputs
from miakit.train.trainer import accuracy, predict_logits, train_model


def digits_models(config: AuditConfig, count: int, device: torch.device) -> list[torch.nn.Module]:
    models = []
    for m in range(count):
        torch.manual_seed(derive_seed(config.seed, "init", m))
        models.append(build_model("mlp", (64,), 10, hidden=config.model.hidden).to(device))
    return models


def cpu_batched_vs_one_by_one(count: int, epochs: int) -> None:
    config = AuditConfig()
    cfg = config.train.model_copy(update={"epochs": epochs})
    pool, device = load_pool("digits"), torch.device("cpu")
    keep = balanced_keep(count, pool.num_records, rng(config.seed, "keep"))
    x, y = torch.from_numpy(pool.x), torch.from_numpy(pool.y)
    rows = [torch.from_numpy(np.flatnonzero(k)) for k in keep]
    seeds = [derive_seed(config.seed, "order", m) for m in range(count)]
    warm = digits_models(config, 2, device)  # first-use costs (lazy imports) outside the timings
    train_model(warm[0], x[rows[0]], y[rows[0]], cfg.model_copy(update={"epochs": 1}), 0)
    train_batched(warm, x, y, rows[:2], cfg.model_copy(update={"epochs": 1}), seeds[:2])
    alone = digits_models(config, count, device)
    start, cpu = time.perf_counter(), time.process_time()
    for m in range(count):
        train_model(alone[m], x[rows[m]], y[rows[m]], cfg, seeds[m])
    one_by_one, one_by_one_cpu = time.perf_counter() - start, time.process_time() - cpu
    stacked = digits_models(config, count, device)
    start, cpu = time.perf_counter(), time.process_time()
    train_batched(stacked, x, y, rows, cfg, seeds)
    batched, batched_cpu = time.perf_counter() - start, time.process_time() - cpu
    gap = max(
        (a - b).abs().max().item()
        for ma, mb in zip(alone, stacked, strict=True)
        for a, b in zip(ma.parameters(), mb.parameters(), strict=True)
    )
    print(f"CPU: {count} digits MLPs (hidden {config.model.hidden}, Adam), {epochs} epochs")
    print(f"  one by one: {one_by_one:8.2f} s wall, {one_by_one_cpu:8.2f} s CPU")
    print(f"  batched:    {batched:8.2f} s wall, {batched_cpu:8.2f} s CPU")
    print(
        f"  speed-up:   {one_by_one / batched:8.2f}x wall, {one_by_one_cpu / batched_cpu:.2f}x CPU "
        f"(max parameter difference {gap:.1e})"
    )
    trace_overhead(x, y, rows[: min(count, 8)], cfg, seeds, device, None, "digits MLP")


def trace_overhead(x, y, rows, cfg: TrainConfig, seeds, device, norm, label: str) -> None:
    """Time spent recording traces over time spent training, within the same runs."""
    traced = total = 0.0
    for m, r in enumerate(rows):
        torch.manual_seed(m)
        model = make(label, device)
        report = train_model(
            model, x[r], y[r], cfg, seeds[m], augment_seed=seeds[m] + 1, norm=norm, trace_on=(x, y)
        )
        traced, total = traced + report.trace_seconds, total + report.seconds
    print(
        f"  trace overhead ({label}, {len(rows)} models, N = {len(y)} traced records): "
        f"{100 * traced / (total - traced):.1f}% of training time"
    )


MODEL_ARGS: dict[str, tuple] = {
    "digits MLP": ("mlp", (64,), 10, {"hidden": [256]}),
    "fastnet": ("fastnet", (32, 32, 3), 10, {}),
    "wrn28-2": ("wrn28-2", (32, 32, 3), 10, {}),
}


def make(label: str, device: torch.device) -> torch.nn.Module:
    arch, shape, classes, options = MODEL_ARGS[label]
    return build_model(arch, shape, classes, **options).to(device)


def bf16_matmul_rate(device: torch.device) -> float:
    """Measured dense bf16 matmul FLOP/s: the floor's denominator."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ a
    torch.cuda.synchronize()
    return 2 * 8192**3 * reps / (time.perf_counter() - start)


def training_flops(label: str, num_records: int, epochs: int, device: torch.device) -> float:
    """Forward FLOPs of one image × 3 (forward + backward) × records × epochs."""
    model = make(label, device)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32, device=device))
    return 3 * counter.get_total_flops() * num_records * epochs


def gpu_cifar(label: str, cfg: TrainConfig, timed_epochs: int) -> None:
    """Train one CIFAR-10 model; epochs beyond `timed_epochs` are extrapolated (said so)."""
    device = torch.device("cuda")
    pool = load_pool("cifar10")
    norm = Normalization(pool.mean, pool.std)
    x, y = torch.from_numpy(pool.x).to(device), torch.from_numpy(pool.y).to(device)
    x_test = torch.from_numpy(pool.x_test).to(device)
    run_cfg = cfg.model_copy(update={"epochs": timed_epochs})
    torch.manual_seed(0)
    model = make(label, device)
    model(model_inputs(x[:8], norm))  # CUDA context and kernels warmed outside the timing
    torch.cuda.synchronize()
    start = time.perf_counter()
    train_model(model, x, y, run_cfg, 1, augment_seed=2, norm=norm)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) * cfg.epochs / timed_epochs
    test_acc = accuracy(predict_logits(model, x_test, norm), pool.y_test)
    floor = training_flops(label, len(y), cfg.epochs, device) / bf16_matmul_rate(device)
    note = "" if timed_epochs == cfg.epochs else f" (from {timed_epochs} timed epochs)"
    print(f"GPU {torch.cuda.get_device_name()}: {label}, {cfg.epochs} epochs on 50,000 images")
    print(f"  seconds per model: {seconds:.1f}{note}; models per GPU-hour: {3600 / seconds:.0f}")
    print(f"  test accuracy after {timed_epochs} epochs: {test_acc:.4f}")
    print(f"  ratio to the FLOP floor ({floor:.1f} s): {seconds / floor:.1f}x")
    rows = [torch.randperm(len(y), device=device)[: len(y) // 2] for _ in range(2)]
    trace_overhead(x, y, rows, run_cfg, [1, 2], device, norm, label)


FASTNET = TrainConfig.model_validate(
    {
        "optimizer": "sgd", "lr": 0.2, "momentum": 0.85, "nesterov": True, "weight_decay": 5e-4,
        "batch_size": 1024, "epochs": 10, "schedule": "onecycle", "warmup_epochs": 2,
        "label_smoothing": 0.2, "augment": {"flip": True, "crop_padding": 2},
    }
)  # fmt: skip
WRN_LIRA = TrainConfig.model_validate(
    {
        "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
        "batch_size": 256, "epochs": 100, "schedule": "cosine",
        "augment": {"flip": True, "crop_padding": 4},
    }
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--wrn-timed-epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(header("train.py"))
    cpu_batched_vs_one_by_one(args.models, args.epochs)
    if not torch.cuda.is_available():
        print("GPU: no CUDA device here; the CIFAR-10 GPU figures were not measured")
        return
    gpu_cifar("fastnet", FASTNET, FASTNET.epochs)
    gpu_cifar("wrn28-2", WRN_LIRA, args.wrn_timed_epochs)


if __name__ == "__main__":
    main()
