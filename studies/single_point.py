"""Study 3 — single-point membership inference: are the records LT-IQR ranks most exposed the ones
a with/without test detects?

Takes study 1's Location audit (run, or resumed, here; `--from-run` names an existing one),
ranks its records by LT-IQR exposure — the mean LT-IQR score over the targets that trained on the
record — and runs miakit's with/without experiment (`miakit single-point`) on the most and the
least exposed records: per record, its loss under models trained with and without it gives the
power of the loss test at α = 5% (empirical threshold, with a Clopper–Pearson interval, and
under a Gaussian fit) and the held-out error rate of that threshold on fresh pairs.

    python studies/single_point.py --scale cpu --out runs/studies/single_point --data-dir DIR \\
        [--from-run runs/studies/loss_traces/loss_traces_location]

writes <out>/results.md, <out>/single_point.csv and <out>/power_vs_exposure.png; the experiment
lives in <out>/with_without/ and resumes when the command is run again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loss_traces import SCALES as LOSS_TRACES_SCALES
from study_common import (
    CONFIGS,
    SCALE_NAMES,
    markdown_table,
    mean_std,
    run_audit,
    study_config,
    write_results,
)

from miakit.config import SinglePointConfig, load_config
from miakit.pipeline import run_single_point
from miakit.store import RunDir, load_npy

TITLE = "Study 3: single-point membership inference on the most and least LT-IQR-exposed records"
AUDIT = "loss_traces_location"
SCALES: dict[str, dict] = {
    "tiny": {
        "per_group": 2,
        "overrides": [
            "data.name=digits",
            "model.hidden=[32]",
            "train.epochs=4",
            "train.lr=0.01",
            "n_iterations=4",
            "subset_size=100",
            "eval_pairs=2",
        ],
    },
    "cpu": {"per_group": 10, "overrides": []},  # 20 would take about 40 min on a loaded machine
    # the published experiment's scale on study 1's full run (CIFAR-10, WRN-28-2; a GPU)
    "full": {
        "per_group": 20,
        "overrides": [
            "data.name=cifar10",
            "model.arch=wrn28-2",
            "train.optimizer=sgd",
            "train.lr=0.1",
            "train.momentum=0.9",
            "train.weight_decay=0.0005",
            "train.schedule=cosine",
            "train.batch_size=256",
            "train.augment={flip: true, crop_padding: 4}",
            "n_iterations=64",
            "subset_size=25000",
            "eval_pairs=16",
        ],
    },
}


def exposure(run: RunDir) -> np.ndarray:
    """Per pool record [N]: the mean LT-IQR score over the targets that trained on it (NaN where
    none did)."""
    scores = load_npy(run.scores("lt-iqr"))
    members = load_npy(run.keep)[: len(scores)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(members, scores, 0.0).sum(axis=0) / members.sum(axis=0)


def extremes(values: np.ndarray, count: int) -> tuple[list[int], list[int]]:
    """The `count` records of highest and of lowest value (NaN left out; ties by index)."""
    ranked = [int(i) for i in np.argsort(-values, kind="stable") if np.isfinite(values[i])]
    return ranked[:count], ranked[-count:][::-1]


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for group, part in table.groupby("group", sort=False):
        ax.scatter(part["lt_iqr_exposure"], part["power_empirical"], label=group, s=18)
    ax.set_xlabel("LT-IQR exposure (mean over member targets)")
    ax.set_ylabel("power of the loss test at α = 5%")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALE_NAMES, default="cpu")
    parser.add_argument("--out", type=Path, required=True, help="folder for runs and results")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory")
    parser.add_argument(
        "--from-run", type=Path, default=None, help="study 1's Location audit (default: run one)"
    )
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    audit_config = study_config(AUDIT, LOSS_TRACES_SCALES[args.scale]["overrides"], args.data_dir)
    run = run_audit(audit_config, args.from_run or args.out / AUDIT)
    values = exposure(run)
    most, least = extremes(values, scale["per_group"])
    sets = [*scale["overrides"], f"targets.indices={most + least}"]
    if args.data_dir is not None:
        sets.append(f"data.data_dir={args.data_dir}")
    config = load_config(CONFIGS / "single_point.yaml", sets, schema=SinglePointConfig)
    results = run_single_point(config, args.out / "with_without")
    group = {i: "most exposed" for i in most} | {i: "least exposed" for i in least}
    table = pd.DataFrame(
        [
            {
                "record": r.index,
                "group": group[r.index],
                "lt_iqr_exposure": values[r.index],
                **r.power.as_dict(),
                "error_rate": r.error_rate,
            }
            for r in results
        ]
    ).sort_values("lt_iqr_exposure", ascending=False)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "single_point.csv", index=False)
    plot(table, args.out / "power_vs_exposure.png")
    summary = pd.DataFrame(
        [
            {
                "group": name,
                "records": len(part),
                "LT-IQR exposure": mean_std(part["lt_iqr_exposure"]),
                "power@5% (empirical)": mean_std(part["power_empirical"]),
                "power@5% (Gaussian fit)": mean_std(part["power_gaussian"]),
                "records with power > 5%": int((part["power_empirical"] > config.alpha).sum()),
                "held-out error rate": mean_std(part["error_rate"]),
            }
            for name, part in table.groupby("group", sort=False)
        ]
    )
    rho = spearmanr(table["lt_iqr_exposure"], table["power_empirical"]).statistic
    body = (
        f"- study 1's audit: {run.root} ({audit_config.data.name}, "
        f"{audit_config.split.num_models} models)\n"
        f"- with/without: {config.n_iterations} rounds to fit the test, {config.eval_pairs} "
        f"held-out pairs, {config.subset_size} training records a model, "
        f"{config.model.arch} {config.model.hidden}, {config.train.epochs} epochs; "
        f"{scale['per_group']} records per group\n\n"
        + markdown_table(summary)
        + f"\n\nSpearman correlation of LT-IQR exposure and power over the "
        f"{len(table)} records: {rho:.3f}\n\n![power against exposure](power_vs_exposure.png)\n"
    )
    return write_results(args.out, TITLE, args.scale, body)


if __name__ == "__main__":
    main()
