"""Attacks for the deployed case (issue 22): each attack's TPR at low FPR as the API's output is
restricted, with QMIA (no reference model) beside LiRA and the label-only attacks beside the
score-based ones, for the same trained models and targets.

For each setup the models are trained and queried once; then, for each `query.output` in
OUTPUTS, every attack is scored (or skipped, with why) and evaluated: the stored logits stay
full, only what the attacks read changes. Prints, per setup, TPR at 1% and at 0.1% FPR (mean
over the targets, in %), AUC, and each attack's scoring time on full logits (scores from earlier
runs are removed first) with the reference models it used.

Setups: digits (configs/digits.yaml: 64 MLPs, 16 of them targets) and Fashion-MNIST (16 MLPs on
a 4,000-record subsample, 18 query views, 4 targets; needs the data in --data-dir).

Usage: python bench/restricted_outputs.py [--runs DIR] [--data-dir DIR] [--only digits|fashion-mnist]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from machine import header

from miakit import pipeline
from miakit.attacks import make_attack
from miakit.config import load_config
from miakit.store import RunDir

OUTPUTS = ["logits", "probabilities", "rounded:2", "top-k:1", "label"]
ATTACKS = ["loss", "lira-online", "lira-offline", "rmia", "qmia", "gap", "label-augmentation"]
ROOT = Path(__file__).resolve().parents[1]


def setups(data_dir: Path) -> dict[str, tuple[Path | None, list[str]]]:
    return {
        "digits": (ROOT / "configs" / "digits.yaml", ["evaluate.targets=16"]),
        "fashion-mnist": (
            None,
            [
                "data.name=fashion-mnist",
                f"data.data_dir={data_dir}",
                "data.subsample=4000",
                "split.num_models=16",
                "model.arch=mlp",
                "model.hidden=[256]",
                "train.epochs=10",
                "train.batch_size=128",
                "train.batched=true",
                "execution.models_per_task=16",
                "query.augmentations=18",
                "evaluate.targets=4",
            ],
        ),
    }


def cell(figures: dict, key: str) -> str:
    f = figures.get(key)
    if f is None or "not_measurable" in f or f["mean"] is None:
        return "n/m"
    return f"{100 * f['mean']:.1f}"


def measure(name: str, config_path: Path | None, overrides: list[str], runs: Path) -> None:
    config = load_config(config_path, [*overrides, f"attacks=[{', '.join(ATTACKS)}]"])
    run = RunDir(runs / name)
    started = time.perf_counter()
    planned = pipeline.plan(config, run, log=None)
    pipeline.train(planned, run, log=None)
    pipeline.query(planned, run, log=None)
    trained = time.perf_counter() - started
    shutil.rmtree(run.scores_dir, ignore_errors=True)  # time the scoring itself, not a cache
    num_models, targets = len(planned.keep), len(planned.targets)
    print(f"\n## {name}: {num_models} models, {targets} targets, {planned.pool.num_records} records, "
          f"A={config.query.augmentations}; train+query {trained:.0f} s (cached runs: ~0)")  # fmt: skip
    rows: dict[str, dict[str, str]] = {a: {} for a in ATTACKS}
    seconds: dict[str, float] = {}
    reasons: dict[str, tuple[str, str]] = {}  # attack → (first output it is skipped on, why)
    for output in OUTPUTS:
        config.query.output = output
        for attack in ATTACKS:
            t0 = time.perf_counter()
            pipeline.attack(run, config, [attack])
            if output == "logits":
                seconds[attack] = time.perf_counter() - t0
        pipeline.evaluate(run, config)
        stored = json.loads(run.metrics_json.read_text())
        for attack in ATTACKS:
            if attack in stored["skipped"]:
                rows[attack][output] = "skipped"
                reasons.setdefault(attack, (output, stored["skipped"][attack]))
                continue
            figures = stored["attacks"][attack]
            rows[attack][output] = (
                f"{cell(figures, 'tpr@fpr=0.01')} / {cell(figures, 'tpr@fpr=0.001')} "
                f"({figures['auc']['mean']:.3f})"
            )
    print("TPR at FPR 1% / 0.1% in % (AUC), mean over targets:")
    print("| attack | " + " | ".join(OUTPUTS) + " |")
    print("|---" * (len(OUTPUTS) + 1) + "|")
    for attack in ATTACKS:
        print(f"| {attack} | " + " | ".join(rows[attack][o] for o in OUTPUTS) + " |")
    print("\nScoring on full logits (all targets), and the reference models each target uses:")
    for attack in ATTACKS:
        references = num_models - 1 if make_attack(attack).reference_needs else 0
        print(f"  {attack:>20}: {seconds[attack]:6.1f} s, {references} reference models")
    print("Skipped (from the first output on), with the reason metrics.json gives:")
    for attack, (output, reason) in reasons.items():
        print(f"  {attack} ({output}): {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-restricted-outputs")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--only", choices=["digits", "fashion-mnist"])
    args = parser.parse_args()
    print(header("restricted_outputs.py"))
    for name, (config_path, overrides) in setups(args.data_dir).items():
        if args.only in (None, name):
            measure(name, config_path, overrides, args.runs)


if __name__ == "__main__":
    main()
