"""Study 2 — prediction scores and overconfidence (Hintersdorf et al., "To Trust or Not To Trust
Prediction Scores for Membership Inference Attacks", IJCAI 2022): threshold attacks on the top
softmax probability and on the prediction entropy, their threshold set on one shadow model, call
out-of-distribution inputs "member" when the model is overconfident on them; calibration
defences change that and what the attacks find.

Per defence (none, label smoothing, L2, last-layer Laplace, temperature scaling) one audit trains
M models and queries them on the pool and on the out-of-distribution sets of the config. For each
target: the attacks' TPR, FPR and precision on the pool (members vs non-members), their FPR on
each out-of-distribution set (the share of its records called member: no model trained on any),
the test-set ECE and overconfidence error, and the mean max prediction score (MMPS) on the
non-members and on each out-of-distribution set.

    python studies/overconfidence.py --scale cpu --out runs/studies/overconfidence --data-dir DIR

writes <out>/results.md, <out>/overconfidence.csv and <out>/ood_fpr.png; the audits live in
<out>/<defence>/ and resume when the command is run again.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_common import (
    markdown_table,
    mean_std,
    parse_args,
    run_audit,
    study_config,
    write_results,
)

from miakit import model_jobs
from miakit.attacks import make_attack
from miakit.attacks.threshold import threshold_report
from miakit.config import AuditConfig
from miakit.ood_study import ood_logits
from miakit.plan import evaluation_design, load_plan
from miakit.signals import Signals, max_prob
from miakit.store import RunDir

TITLE = "Study 2: prediction scores and overconfidence — OOD false positives per defence"
CONFIG = "overconfidence"
ATTACKS = ("threshold-confidence", "threshold-entropy")
#: defence → overrides of the plain config
DEFENCES: dict[str, list[str]] = {
    "none": [],
    "label smoothing": ["train.label_smoothing=0.1"],
    "L2": ["train.weight_decay=0.001"],
    "last-layer Laplace": ["defences.laplace.enabled=true"],
    "temperature scaling": ["defences.temperature_scaling=true"],
}
#: defences applied at query time: their audits reuse the plain models (only queried again)
QUERY_SIDE = ("last-layer Laplace", "temperature scaling")
#: the defences a tiny run covers: the plain models and one query-side defence
TINY_DEFENCES = ("none", "last-layer Laplace")
SCALES: dict[str, list[str]] = {
    "tiny": [
        "data.name=digits",
        "data.subsample=400",
        "split.num_models=4",
        "model.hidden=[32]",
        "train.epochs=6",
        "train.lr=0.01",
        "evaluate.targets=2",
        "evaluate.ood=[{kind: permuted, count: 100}, {kind: noise, count: 100}]",
    ],
    "cpu": [],
    # the paper's CIFAR-10 setting: ResNet-18, shadow and target trained alike (a GPU)
    "full": [
        "data.name=cifar10",
        "data.subsample=null",
        "split.num_models=16",
        "model.arch=resnet18",
        "train.optimizer=sgd",
        "train.lr=0.1",
        "train.momentum=0.9",
        "train.weight_decay=0.0005",
        "train.batch_size=128",
        "train.epochs=100",
        "train.schedule=cosine",
        "train.augment={flip: true, crop_padding: 4}",
        "train.batched=false",
        "execution.models_per_task=1",
        "evaluate.ood=[{kind: dataset, source: cifar100, count: 10000}, "
        "{kind: permuted, count: 10000}, {kind: scaled, factor: 0.5, count: 10000}, "
        "{kind: noise, count: 10000}]",
    ],
}


def defence_rows(run: RunDir, config: AuditConfig, defence: str) -> list[dict]:
    """One row per target and attack: the pool and out-of-distribution figures."""
    signals = Signals.from_run(run)
    design = evaluation_design(run, config, signals.num_models)
    plan = load_plan(run)
    calibration = pd.read_parquet(run.root / "tables" / "calibration.parquet").set_index("target")
    ood = {
        spec.label: ood_logits(plan, run, spec, model_jobs.query_all)
        for spec in config.evaluate.ood
    }
    n = signals.num_records
    rows = []
    for name in ATTACKS:
        attack = make_attack(name, config.attack_options.get(name))
        pool = attack.score_targets(signals, design.targets, design.references)
        ood_scores = {
            label: attack.score_targets(
                signals.with_queries(list(logits), labels), design.targets, design.references
            )[:, n:]
            for label, (labels, logits) in ood.items()
        }
        for i, t in enumerate(design.targets):
            confidence = max_prob(np.asarray(signals.logits[t], dtype=np.float64)).mean(axis=-1)
            members = signals.keep[t]
            report = threshold_report(pool[i] > 0.5, members, confidence)
            row = {
                "defence": defence,
                "attack": name,
                "target": t,
                "train accuracy": calibration.loc[t, "train_accuracy"],
                "test accuracy": calibration.loc[t, "test_accuracy"],
                "test ECE": calibration.loc[t, "test_ece"],
                "test overconfidence": calibration.loc[t, "test_overconfidence"],
                "MMPS non-members": float(confidence[~members].mean()),
                "TPR": report.recall,
                "FPR": report.fpr,
                "precision": report.precision,
            }
            for label, (_, logits) in ood.items():
                row[f"OOD FPR {label}"] = float((ood_scores[label][i] > 0.5).mean())
                ood_conf = max_prob(np.asarray(logits[t], dtype=np.float64))
                row[f"MMPS {label}"] = float(ood_conf.mean())
            rows.append(row)
    return rows


def summary_tables(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(calibration per defence, attack figures per defence and attack): mean ± std over targets."""
    per_model = [c for c in rows.columns if c.startswith(("train", "test", "MMPS"))]
    first = rows[rows["attack"] == ATTACKS[0]]
    calibration = pd.DataFrame(
        [
            {"defence": d, **{c: mean_std(g[c]) for c in per_model}}
            for d, g in first.groupby("defence", sort=False)
        ]
    )
    figures = ["TPR", "FPR", "precision"] + [c for c in rows.columns if c.startswith("OOD FPR")]
    attacks = pd.DataFrame(
        [
            {"defence": d, "attack": a, **{c: mean_std(g[c]) for c in figures}}
            for (d, a), g in rows.groupby(["defence", "attack"], sort=False)
        ]
    )
    return calibration, attacks


def plot(rows: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [c for c in rows.columns if c.startswith("OOD FPR")]
    defences = list(dict.fromkeys(rows["defence"]))
    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(10, 3.6), sharey=True)
    width = 0.8 / len(defences)
    for ax, name in zip(axes, ATTACKS, strict=True):
        part = rows[rows["attack"] == name]
        for j, defence in enumerate(defences):
            values = part[part["defence"] == defence][["FPR", *sets]]
            ax.bar(
                np.arange(len(sets) + 1) + j * width,
                values.mean(),
                width,
                yerr=values.std(),
                label=defence,
            )
        ax.set_xticks(np.arange(len(sets) + 1) + width * (len(defences) - 1) / 2)
        ax.set_xticklabels(
            ["pool non-members", *(s.removeprefix("OOD FPR ") for s in sets)],
            rotation=20,
            ha="right",
            fontsize=8,
        )
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share called member (FPR)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(__doc__.splitlines()[0], argv)
    rows = []
    for defence, overrides in DEFENCES.items():
        if args.scale == "tiny" and defence not in TINY_DEFENCES:
            continue
        config = study_config(CONFIG, SCALES[args.scale] + overrides, args.data_dir)
        folder = args.out / defence.lower().replace(" ", "_").replace("-", "_")
        plain = args.out / "none" if defence in QUERY_SIDE else None
        rows += defence_rows(run_audit(config, folder, plain), config, defence)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "overconfidence.csv", index=False)
    plot(table, args.out / "ood_fpr.png")
    calibration, attacks = summary_tables(table)
    body = (
        f"{config.split.num_models} models per defence ({config.model.arch}, "
        f"{config.train.epochs} epochs) on {config.data.name}; "
        f"{len(table['target'].unique())} targets, each attacked with the first of its other "
        "models as the shadow model. Mean ± std over targets.\n\n"
        "Calibration and confidence (MMPS: mean max prediction score):\n\n"
        + markdown_table(calibration)
        + "\n\nThreshold attacks: on the pool (TPR, FPR, precision) and the share of each "
        "out-of-distribution set called member (OOD FPR):\n\n"
        + markdown_table(attacks)
        + "\n\n![OOD false-positive rates](ood_fpr.png)\n"
    )
    return write_results(args.out, TITLE, args.scale, body)


if __name__ == "__main__":
    main()
