"""Transfer learning vs full training: seconds per shadow model, measured as ratios in one run.

Two runs of the same pool, architecture, recipe and epochs: one trains every model in full; the
other (defences.transfer) trains only a linear head on the shared features of a frozen extractor,
pretrained once by miakit on `--records` records left out of the pool, for the same epochs. Both
go through miakit's own train stage (pipeline.train), so the figures are what an audit pays.
The one-off cost (pretraining + features of every pool record) is printed apart, and amortized
over M models. Data: Fashion-MNIST from --data-dir (default ../shared/datasets) when present,
else synthetic 28×28 images of the same size.
Usage: python bench/transfer.py [--arch cnn] [--records 4000] [--epochs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from machine import header

from miakit import pipeline
from miakit.config import AuditConfig, load_config
from miakit.plan import plan
from miakit.store import RunDir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MODELS = 2


def data_settings(data_dir: Path, records: int, scratch: Path) -> tuple[list[str], str]:
    """Fashion-MNIST where its files are, else synthetic images of its size; the pool is
    `records` records and as many are left out for the pretraining."""
    if (data_dir / "fashion_mnist").is_dir():
        settings = ["data.name=fashion-mnist", f"data.data_dir={data_dir}"]
        return [*settings, "data.download=false", f"data.subsample={records}"], "Fashion-MNIST"
    rng = np.random.default_rng(0)
    path = scratch / "synthetic.npz"
    x = rng.integers(0, 256, (2 * records, 28, 28), dtype=np.uint8)
    np.savez(path, x=x, y=rng.integers(0, 10, 2 * records))
    return ["data.name=user", f"data.path={path}", f"data.subsample={records}"], "synthetic"


def train_run(config: AuditConfig, root: Path) -> tuple[list[dict], dict | None]:
    """Train the run's models with miakit's train stage; their meta.json and transfer.json."""
    run = RunDir(root)
    pipeline.train(plan(config, run), run, log=None)
    shared = None
    if run.transfer_json.is_file():
        shared = json.loads(run.transfer_json.read_text())
        test = run.transfer_test_features
        shared["test_records"] = np.load(test, mmap_mode="r").shape[1] if test.is_file() else 0
    return [run.read_meta(m) for m in range(MODELS)], shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--records", type=int, default=4000, help="pool size N")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(header("transfer.py"))
    with tempfile.TemporaryDirectory() as scratch:
        data, name = data_settings(args.data_dir, args.records, Path(scratch))
        common = [
            *data,
            f"split.num_models={MODELS}",
            f"model.arch={args.arch}",
            f"train.epochs={args.epochs}",
            "train.batch_size=128",
            "train.device=cpu",
            "attacks=[loss]",  # only training is measured; LiRA online refuses 2 models
        ]
        transfer = [
            "defences.transfer.enabled=true",
            f"defences.transfer.pretrain_epochs={args.epochs}",
            f"defences.transfer.pretrain_records={args.records}",
        ]
        heads, shared = train_run(load_config(None, [*common, *transfer]), Path(scratch) / "t")
        full, _ = train_run(load_config(None, common), Path(scratch) / "f")
    assert shared is not None
    head_s = float(np.mean([m["train_seconds"] for m in heads]))
    full_s = float(np.mean([m["train_seconds"] for m in full]))
    pretrain_s, features_s = shared["seconds"]["extractor"], shared["seconds"]["features"]
    print(
        f"{name}, {args.arch}, pool N = {args.records} (each model trains on N/2), "
        f"Adam, batch 128, {args.epochs} epochs, CPU"
    )
    print(f"  full training:        {full_s:8.2f} s per model")
    print(f"  transfer, head only:  {head_s:8.2f} s per model (linear head on shared features)")
    print(f"  one-off, per run:     {pretrain_s:8.2f} s pretraining on {args.records} left-out")
    print(
        f"                        {features_s:8.2f} s features of the {args.records} pool and "
        f"{shared['test_records']} test records"
    )
    print(f"  speed-up, head alone: {full_s / head_s:8.1f}x")
    for m in (16, 64, 256):
        amortized = head_s + (pretrain_s + features_s) / m
        print(f"  speed-up, M = {m:3d}:    {full_s / amortized:8.1f}x (one-off spread over M)")
    accuracy = [np.mean([m["test_accuracy"] or np.nan for m in ms]) for ms in (full, heads)]
    print(f"  test accuracy:        {accuracy[0]:.3f} full, {accuracy[1]:.3f} transfer")


if __name__ == "__main__":
    main()
