"""Study 1 — loss traces (Pollock et al., "Free record-level privacy risk evaluation through
artifact-based methods"): does LT-IQR, computed from the target's own training loss traces, find
the records that the strongest attacks with all reference models expose?

Per data set, one audit trains M models in complementary pairs with loss traces. For each of the
first T models (the targets), the ground truth is the set of its members that online LiRA, RMIA
(each with all M − 1 other models as references), or either, calls member at FPR 0.1%
(target-calibrated, as the paper's Tables 1 and 5). Rankings of the target's members are judged
by precision@k, k = 1% and 5% of its members: LT-IQR, the loss alone (highest first), and online
LiRA / RMIA with only 2, 4 and 8 references (k/2 complementary pairs drawn per target, so every
record has k/2 IN and k/2 OUT references).

    python studies/loss_traces.py --scale cpu --out runs/studies/loss_traces --data-dir DIR

writes <out>/results.md, <out>/precision_at_k.csv and <out>/precision_at_1pct.png; the audits
live in <out>/<data set>/ and resume when the command is run again.
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

from miakit.attacks import make_attack
from miakit.evaluate.vulnerability import FLAG_FPR, precision_at_k_table
from miakit.seeding import rng
from miakit.signals import Signals
from miakit.store import RunDir, load_npy

TITLE = "Study 1: loss traces — LT-IQR against the strongest attacks' exposed records"
DATASETS = ("loss_traces_location", "loss_traces_fashion_mnist")
FRACTIONS = (0.01, 0.05)
FEW_REFERENCES = (2, 4, 8)
GROUND_TRUTH = ("lira-online", "rmia")
SCALES: dict[str, dict] = {
    "tiny": {
        "datasets": DATASETS[:1],
        "overrides": [
            "data.name=digits",
            "data.subsample=400",
            "split.num_models=20",
            "model.hidden=[32]",
            "train.epochs=6",
            "train.lr=0.01",
            "evaluate.targets=2",
        ],
    },
    "cpu": {"datasets": DATASETS, "overrides": []},
    # the paper's main setup: WRN-28-2 on CIFAR-10, 256 models (a GPU)
    "full": {
        "datasets": DATASETS[:1],
        "overrides": [
            "data.name=cifar10",
            "data.subsample=null",
            "split.num_models=256",
            "model.arch=wrn28-2",
            "train.optimizer=sgd",
            "train.lr=0.1",
            "train.momentum=0.9",
            "train.nesterov=true",
            "train.weight_decay=0.0005",
            "train.batch_size=256",
            "train.epochs=100",
            "train.schedule=cosine-epoch",
            "train.augment={flip: true, crop_padding: 4}",
            "train.batched=false",
            "query.augmentations=2",
            "execution.models_per_task=1",
            "evaluate.targets=16",
        ],
    },
}


def few_reference_scores(
    signals: Signals, attack: str, targets: Sequence[int], count: int, seed: int
) -> np.ndarray:
    """Scores [T, N] of each target with `count` references: count/2 complementary pairs (models
    2p, 2p+1) drawn at random among the pairs that do not hold the target."""
    pairs = signals.num_models // 2
    model = make_attack(attack)
    rows = []
    for t in targets:
        others = [p for p in range(pairs) if p != t // 2]
        chosen = rng(seed, f"few-references-{attack}-{count}-{t}").choice(
            others, count // 2, replace=False
        )
        references = sorted(int(m) for p in chosen for m in (2 * p, 2 * p + 1))
        rows.append(model.score_targets(signals, [t], references)[0])
    return np.stack(rows)


def precision_rows(run: RunDir, dataset: str, seed: int) -> pd.DataFrame:
    """Per ranking, ground truth, target and fraction: precision@k."""
    signals = Signals.from_run(run)
    keep = signals.keep
    targets = list(range(load_npy(run.scores("loss")).shape[0]))
    full = {name: load_npy(run.scores(name)) for name in GROUND_TRUTH}
    truths = {name: {name: s} for name, s in full.items()}
    truths["lira-online ∪ rmia"] = full
    # the loss baseline ranks the riskiest first: highest loss (the LOSS attack's score is −loss)
    rankings = {
        "lt-iqr": load_npy(run.scores("lt-iqr")),
        "loss (highest first)": -load_npy(run.scores("loss")),
    }
    for attack in GROUND_TRUTH:
        for count in FEW_REFERENCES:
            if count // 2 < signals.num_models // 2:
                scores = few_reference_scores(signals, attack, targets, count, seed)
                rankings[f"{attack} ({count} refs)"] = scores
    parts = [
        precision_at_k_table(scores, truth, keep, targets, FLAG_FPR, FRACTIONS).assign(
            dataset=dataset, ranking=ranking, ground_truth=label
        )
        for ranking, scores in rankings.items()
        for label, truth in truths.items()
    ]
    return pd.concat(parts, ignore_index=True)


def summary_tables(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(exposed members per data set and ground truth; precision@k per data set and ranking with a
    column per ground truth and fraction), mean ± std over targets."""
    # the ground truth does not depend on the ranking: one ranking's rows count each target once
    first = rows[(rows["fraction"] == FRACTIONS[0]) & (rows["ranking"] == "lt-iqr")]
    exposed = (
        first.groupby(["dataset", "ground_truth"], sort=False)["n_vulnerable"]
        .agg(lambda v: mean_std(v, 1))
        .unstack()
        .reset_index()
        .rename(columns={"dataset": "data set"})
    )
    out = []
    for (dataset, ranking), group in rows.groupby(["dataset", "ranking"], sort=False):
        row = {"data set": dataset, "ranking": ranking}
        for (truth, f), part in group.groupby(["ground_truth", "fraction"], sort=False):
            row[f"{truth} P@{f:.0%}"] = mean_std(part["precision"])
        out.append(row)
    return exposed, pd.DataFrame(out)


def plot(rows: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    union = rows[(rows["ground_truth"] == "lira-online ∪ rmia") & (rows["fraction"] == 0.01)]
    datasets = list(dict.fromkeys(union["dataset"]))
    rankings = list(dict.fromkeys(union["ranking"]))
    fig, ax = plt.subplots(figsize=(9.5, 3.6))
    width = 0.8 / len(datasets)
    for i, dataset in enumerate(datasets):
        part = union[union["dataset"] == dataset].groupby("ranking", sort=False)["precision"]
        ax.bar(
            np.arange(len(rankings)) + i * width,
            part.mean().reindex(rankings),
            width,
            yerr=part.std().reindex(rankings),
            label=dataset,
        )
    ax.set_xticks(np.arange(len(rankings)) + width * (len(datasets) - 1) / 2)
    ax.set_xticklabels(rankings, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("precision@1% (mean ± std)")
    ax.set_ylim(0, 1)
    ax.set_title("finding the members LiRA ∪ RMIA (all refs) expose at FPR 0.1%", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(__doc__.splitlines()[0], argv)
    scale = SCALES[args.scale]
    parts = []
    details = []
    for dataset in scale["datasets"]:
        config = study_config(dataset, scale["overrides"], args.data_dir)
        run = run_audit(config, args.out / dataset)
        label = f"{config.data.name} ({dataset})"
        parts.append(precision_rows(run, label, config.seed))
        calibration = pd.read_parquet(run.root / "tables" / "calibration.parquet")
        details.append(
            f"- {label}: {config.split.num_models} models ({config.model.arch}, "
            f"{config.train.epochs} epochs), {len(calibration)} targets, "
            f"train accuracy {mean_std(calibration['train_accuracy'])}, "
            f"test accuracy {mean_std(calibration['test_accuracy'])}"
        )
    rows = pd.concat(parts, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / "precision_at_k.csv", index=False)
    plot(rows, args.out / "precision_at_1pct.png")
    exposed, precision = summary_tables(rows)
    ks = rows.groupby(["dataset", "fraction"])["k"].mean().unstack()
    body = (
        "\n".join(details)
        + "\n\nGround truth: a target's members that online LiRA, RMIA (all other models as "
        "references), or either, calls member at FPR 0.1% (target-calibrated). Their number per "
        "target, mean ± std:\n\n"
        + markdown_table(exposed)
        + "\n\nPrecision@k (P@f: k = f × the target's members; "
        + "; ".join(f"{d}: k = " + ", ".join(f"{int(k)}" for k in ks.loc[d]) for d in ks.index)
        + ") of each ranking of a target's members against each ground truth, mean ± std over "
        "targets:\n\n" + markdown_table(precision) + "\n\n![precision@1%](precision_at_1pct.png)\n"
    )
    return write_results(args.out, TITLE, args.scale, body)


if __name__ == "__main__":
    main()
