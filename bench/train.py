"""Training speed, measured as ratios in one run so that they hold whatever the machine's load.

CPU part (--models > 0): the default digits audit's 64 MLPs (Adam, 60 epochs) trained one by one
and then batched (train.batched), and the overhead of recording loss traces.
CIFAR-10 part (by default where CUDA is present; --cifar fastnet --device cpu runs it on a CPU):
one model trained on the full training split with the fast net's recipe and with the LiRA
WideResNet-28-2 recipe (its epochs beyond --wrn-timed-epochs extrapolated), test accuracy after
every epoch, seconds per model, models per hour, the ratio to the FLOP floor (training FLOPs over
the measured bf16 matmul rate on CUDA, float32 on CPU), and the loss-trace overhead of models
trained on random halves with the whole split traced. Data: the exact cifar10 files where they
are, else the lossy JPEG copy (cifar10-jpeg). On the device tool's GPU: bench/gpu_prepare.sh.
Usage: python bench/train.py [--models 64] [--epochs 60] [--threads N] [--cifar ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from machine import header
from torch.utils.flop_counter import FlopCounterMode

from miakit.config import AuditConfig, TrainConfig, load_config
from miakit.data import balanced_keep, load_pool
from miakit.data.registry import resolve_data_dir
from miakit.data.sources import SOURCES
from miakit.data.verify import dataset_folder
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.query import identity_view, query_logits
from miakit.seeding import derive_seed, rng
from miakit.train.batched import train_batched
from miakit.train.inputs import Normalization, model_inputs
from miakit.train.traces import CHUNK
from miakit.train.trainer import accuracy, resolve_device, train_model


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: torch.device) -> float:
    """Measured dense matmul FLOP/s (bf16 on CUDA, float32 on CPU): the floor's denominator."""
    size = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ a
    synchronize(device)
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ a
    synchronize(device)
    return 2 * size**3 * reps / (time.perf_counter() - start)


def training_flops(label: str, num_records: int, epochs: int, device: torch.device) -> float:
    """Forward FLOPs of one image × 3 (forward + backward) × records × epochs."""
    model = make(label, device)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32, device=device))
    return 3 * counter.get_total_flops() * num_records * epochs


def test_accuracies(
    model: torch.nn.Module, x_test, y_test: np.ndarray, norm, augmentations: int
) -> str:
    """Test accuracy of the image alone, and of the mean logits over its A query views (A = 2:
    it and its flip; A = 18: flip × shifts of up to 1 pixel, the records' test-time
    augmentation of flips and translations)."""
    logits = query_logits(model, x_test, augmentations, norm=norm)
    plain = accuracy(logits[:, identity_view(augmentations)], y_test)
    return (
        f"{plain:.4f} ({accuracy(logits.mean(axis=1), y_test):.4f} averaged over A={augmentations})"
    )


class EpochClock:
    """Seconds of training per epoch, with the test accuracy taken between epochs left out
    (A = 18 views after the last epoch, A = 2 before)."""

    def __init__(self, model, x_test, y_test: np.ndarray, norm, device, every: int) -> None:
        self.model, self.x_test, self.y_test, self.norm = model, x_test, y_test, norm
        self.device, self.every = device, every
        self.seconds: list[float] = []
        self.accuracies = ""
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - self.start)
        line = f"  epoch {done:3d}/{total}: {self.seconds[-1]:7.1f} s"
        if done % self.every == 0 or done == total:
            views = 18 if done == total else 2
            self.accuracies = test_accuracies(
                self.model, self.x_test, self.y_test, self.norm, views
            )
            line += f", test accuracy {self.accuracies}"
        print(line, flush=True)
        self.start = time.perf_counter()


def cifar(
    label: str,
    cfg: TrainConfig,
    timed_epochs: int,
    dataset: str,
    device: torch.device,
    trace_models: int,
    eval_every: int = 1,
) -> None:
    """Train one model on the full CIFAR-10 training split, then time loss traces while training
    `trace_models` models on random halves of it (as shadow models train), the whole split traced.

    Epochs beyond `timed_epochs` are extrapolated from the timed ones (the output says so).
    """
    pool = load_pool(dataset, download=False)
    norm = Normalization(pool.mean, pool.std)
    x, y = torch.from_numpy(pool.x).to(device), torch.from_numpy(pool.y).to(device)
    x_test = torch.from_numpy(pool.x_test).to(device)
    run_cfg = cfg.model_copy(update={"epochs": timed_epochs})
    torch.manual_seed(0)
    model = make(label, device)
    model(model_inputs(x[:8], norm))  # CUDA context and kernels warmed outside the timing
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    compiled = ", compiled" if cfg.compile else ""
    print(f"{where}: {label}{compiled} on {dataset}, {cfg.epochs} epochs on {len(y):,} images")
    if cfg.compile:  # one compilation serves every model of a run: made outside the timing
        tick, warm = time.perf_counter(), cfg.model_copy(update={"epochs": 1})
        few = slice(0, 2 * cfg.batch_size + 17)
        trace = (x[: CHUNK + 100], y[: CHUNK + 100])  # eval-mode graph, chunk and remainder
        train_model(
            make(label, device), x[few], y[few], warm, 0, augment_seed=0, norm=norm, trace_on=trace
        )
        synchronize(device)
        print(f"  compilation (once per run): {time.perf_counter() - tick:.1f} s")
    clock = EpochClock(model, x_test, pool.y_test, norm, device, eval_every)
    train_model(model, x, y, run_cfg, 1, augment_seed=2, norm=norm, on_epoch=clock)
    seconds = sum(clock.seconds) * cfg.epochs / timed_epochs
    floor = training_flops(label, len(y), cfg.epochs, device) / matmul_rate(device)
    note = "" if timed_epochs == cfg.epochs else f" (from {timed_epochs} timed epochs)"
    print(f"  seconds per model: {seconds:.1f}{note}; models per hour: {3600 / seconds:.1f}")
    print(f"  test accuracy after {timed_epochs} epochs: {clock.accuracies}")
    kind = "bf16" if device.type == "cuda" else "float32"
    print(
        f"  ratio to the FLOP floor ({floor:.1f} s at the {kind} matmul rate): {seconds / floor:.1f}x"
    )
    if trace_models:
        generator = torch.Generator().manual_seed(0)
        rows = [
            torch.randperm(len(y), generator=generator)[: len(y) // 2].to(device)
            for _ in range(trace_models)
        ]
        trace_overhead(x, y, rows, run_cfg, list(range(trace_models)), device, norm, label)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: the recipes users run: the fast net's and the LiRA / loss-traces WideResNet-28-2's
FASTNET = load_config(CONFIGS / "fastnet_cifar10.yaml").train
WRN_LIRA = load_config(CONFIGS / "lira_cifar10.yaml").train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=64, help="digits MLPs (0: skip the CPU part)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--cifar",
        choices=["auto", "none", "fastnet", "wrn28-2", "both"],
        default="auto",
        help="CIFAR-10 models to train (auto: both where CUDA is present, none elsewhere)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--dataset",
        default=None,
        help="cifar10 or cifar10-jpeg (default: cifar10 where its files are, else cifar10-jpeg)",
    )
    parser.add_argument("--wrn-timed-epochs", type=int, default=5)
    parser.add_argument("--trace-models", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=1, help="test accuracy every k epochs")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train.compile for the CIFAR models (default: as their configs say)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(header("train.py"))
    if args.models:
        cpu_batched_vs_one_by_one(args.models, args.epochs)
    device = resolve_device(args.device)
    labels = {
        "auto": ["fastnet", "wrn28-2"] if device.type == "cuda" else [],
        "none": [], "fastnet": ["fastnet"], "wrn28-2": ["wrn28-2"], "both": ["fastnet", "wrn28-2"],
    }[args.cifar]  # fmt: skip
    if not labels:
        print("CIFAR-10: not measured (no CUDA device here; --cifar fastnet runs it on the CPU)")
    dataset = args.dataset or ("cifar10" if cifar10_present() else "cifar10-jpeg")
    for label in labels:
        cfg, timed = (
            (FASTNET, FASTNET.epochs) if label == "fastnet" else (WRN_LIRA, args.wrn_timed_epochs)
        )
        if args.compile is not None:
            cfg = cfg.model_copy(update={"compile": args.compile})
        cifar(label, cfg, timed, dataset, device, args.trace_models, args.eval_every)


def cifar10_present() -> bool:
    """Whether the exact CIFAR-10 files are in the data directory (checked, not loaded)."""
    try:
        dataset_folder(SOURCES["cifar10"], resolve_data_dir())
    except MiakitError:
        return False
    return True


if __name__ == "__main__":
    main()
