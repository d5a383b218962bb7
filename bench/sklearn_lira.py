"""LiRA on shadow RandomForests on scikit-learn's breast-cancer data (issue 23).

Another toolkit's documentation reports, for LiRA with 100 shadow RandomForests (100 trees,
min_samples_leaf 1) on this data: AUC ≈ 0.76, TPR ≈ 0.43 at FPR 0.1 and ≈ 0.24 at FPR 0.01.
miakit's setup: the 569 records as the pool, a balanced keep matrix of M models (each record IN
for exactly M/2), every model a target in turn against the M − 1 others (leave-one-out), LiRA
online and offline (median centres, per-record σ). Printed per attack: AUC and TPR at FPR 0.1
and 0.01 as mean ± std over targets (each target's ROC has ~284 non-members: FPR 0.01 is its
2 largest non-member scores), the same from one ROC of all targets' scores pooled, and target 0's
own figures, and the range over targets with how many reach the published figures. Usage: python bench/sklearn_lira.py [--models 101] [--trees 100] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from machine import header
from sklearn.metrics import roc_auc_score, roc_curve

from miakit import pipeline
from miakit.config import load_config
from miakit.store import RunDir

FPRS = (0.1, 0.01)
ATTACKS = ("lira-online", "lira-offline", "lira-online-fixed", "lira-offline-fixed")
PUBLISHED = (0.76, 0.43, 0.24)  # the other toolkit's AUC, TPR at FPR 0.1 and 0.01


def tpr_at(members: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """The largest TPR whose FPR ≤ fpr, from the full ROC."""
    fprs, tprs, _ = roc_curve(members, scores)
    return float(tprs[fprs <= fpr].max())


def figures(members: np.ndarray, scores: np.ndarray) -> list[float]:
    return [roc_auc_score(members, scores), *(tpr_at(members, scores, x) for x in FPRS)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--out", default=None, help="keep the run here (default: a temp dir)")
    args = parser.parse_args()
    print(header("sklearn_lira.py"))
    config = load_config(
        None,
        [
            "data.name=breast-cancer",
            "model.arch=sklearn",
            "model.estimator=sklearn.ensemble.RandomForestClassifier",
            f"model.params={{n_estimators: {args.trees}, min_samples_leaf: 1}}",
            f"split.num_models={args.models}",
            f"attacks=[{', '.join(ATTACKS)}]",
            f"evaluate.fprs=[{', '.join(map(str, FPRS))}]",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(args.out or tmp)
        start = time.perf_counter()
        planned = pipeline.plan(config, run, log=None)
        pipeline.train(planned, run, log=None)
        trained = time.perf_counter()
        pipeline.query(planned, run, log=None)
        pipeline.attack(run, planned.config)
        done = time.perf_counter()
        keep = planned.keep
        print(
            f"M={args.models} forests of {args.trees} trees, N={keep.shape[1]}, "
            f"{int((~keep).sum(axis=1).min())}–{int((~keep).sum(axis=1).max())} non-members per "
            f"target; train {trained - start:.1f} s, query + attack {done - trained:.1f} s"
        )
        print("| attack | figures from | AUC | TPR @ FPR 0.1 | TPR @ FPR 0.01 |")
        print("|---|---|---|---|---|")
        for name in ATTACKS:
            scores = np.load(run.scores(name))
            per = np.array([figures(keep[t], scores[t]) for t in range(len(keep))])
            mean, std = per.mean(axis=0), per.std(axis=0)
            cells = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, std, strict=True))
            print(f"| {name} | each target (mean ± std over {len(keep)}) | {cells} |")
            pooled = figures(keep.ravel(), scores.ravel())
            print(
                f"| {name} | all targets pooled | " + " | ".join(f"{v:.3f}" for v in pooled) + " |"
            )
            print(f"| {name} | target 0 alone | " + " | ".join(f"{v:.3f}" for v in per[0]) + " |")
            ranges = [
                f"{lo:.3f}–{hi:.3f} ({int((column >= p).sum())} ≥ {p})"
                for lo, hi, column, p in zip(
                    per.min(axis=0), per.max(axis=0), per.T, PUBLISHED, strict=True
                )
            ]
            print(f"| {name} | range over targets | " + " | ".join(ranges) + " |")
        fit = sum(run.read_meta(m)["train_seconds"] for m in range(len(keep)))
        print(f"fit time in all (the rest of training is skops files and bookkeeping): {fit:.1f} s")


if __name__ == "__main__":
    main()
