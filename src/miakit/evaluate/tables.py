"""The evaluate stage's tables for people and pandas: thresholds per target, vulnerability per
record, precision@k of the rankings, calibration per target. Written as Parquet with CSV beside."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from miakit.evaluate.calibration import accuracy, reliability
from miakit.evaluate.thresholds import PRIORS, calibrate
from miakit.evaluate.vulnerability import FLAG_FPR, precision_at_k_table, record_vulnerability
from miakit.signals import softmax
from miakit.store import RunDir, load_npy, write_atomic

#: Cheap record rankings judged by precision@k, riskiest first, and the attacks whose flagged
#: members they are judged against (each alone, and their union), as in the LT-IQR paper. Each
#: ranking is the attack's score times its sign: LT-IQR's score (the IQR) ranks the riskiest
#: first; the loss baseline ranks the highest training loss first, while the LOSS attack's score
#: is −loss (ordered for membership, not for risk).
RANKINGS = {"lt-iqr": 1.0, "loss": -1.0}
REFERENCES = ("lira-online", "attack-r", "rmia")
TABLES_DIR = "tables"


def evaluation_tables(
    scores: Mapping[str, np.ndarray],
    keep: np.ndarray,
    targets: Sequence[int],
    fprs: Sequence[float],
    flag_fpr: float = FLAG_FPR,
    priors: Sequence[float] = PRIORS,
) -> dict[str, pd.DataFrame]:
    """Tables by name from attack → scores [T, N]. Thresholds and vulnerability need two targets
    or more (shadow calibration); precision@k needs a ranking and a reference attack."""
    tables: dict[str, pd.DataFrame] = {}
    if len(targets) >= 2:
        tables["thresholds"] = pd.concat(
            [calibrate(s, keep, targets, fprs, priors).assign(attack=a) for a, s in scores.items()],
            ignore_index=True,
        )
        for name, s in scores.items():
            tables[f"vulnerability_{name}"] = record_vulnerability(s, keep, targets, flag_fpr)
    references = {r: scores[r] for r in REFERENCES if r in scores}
    groups = {r: {r: s} for r, s in references.items()}
    if len(references) > 1:
        groups["union(" + ", ".join(references) + ")"] = references
    parts = [
        precision_at_k_table(sign * scores[ranking], group, keep, targets, flag_fpr).assign(
            ranking=ranking, reference=label
        )
        for ranking, sign in RANKINGS.items()
        if ranking in scores
        for label, group in groups.items()
    ]
    if parts:
        tables["precision_at_k"] = pd.concat(parts, ignore_index=True)
    return tables


def calibration_table(
    logits: Sequence[np.ndarray], labels: np.ndarray, keep: np.ndarray, targets: Sequence[int]
) -> pd.DataFrame:
    """Per target from its logits [N, A, C] (the unaugmented view, index 0): accuracy, ECE and
    overconfidence on its members (train) and non-members (test)."""
    rows = []
    for m, t in zip(logits, targets, strict=True):
        probs = softmax(np.asarray(m[:, 0, :], dtype=np.float64))
        row: dict = {"target": t}
        for split, mask in (("train", keep[t]), ("test", ~keep[t])):
            diagram = reliability(probs[mask], labels[mask])
            row[f"{split}_accuracy"] = accuracy(probs[mask], labels[mask])
            row[f"{split}_ece"] = diagram.ece()
            row[f"{split}_overconfidence"] = diagram.overconfidence()
        rows.append(row)
    return pd.DataFrame(rows)


def write_tables(folder: Path, tables: Mapping[str, pd.DataFrame]) -> list[Path]:
    """<name>.parquet and <name>.csv for each table; returns the Parquet paths."""
    paths = []
    for name, table in tables.items():
        parquet = folder / f"{name}.parquet"
        write_atomic(parquet, lambda tmp, t=table: t.to_parquet(tmp, index=False))
        write_atomic(folder / f"{name}.csv", lambda tmp, t=table: t.to_csv(tmp, index=False))
        paths.append(parquet)
    return paths


def write_evaluation_tables(
    run: RunDir,
    scores: Mapping[str, np.ndarray],
    fprs: Sequence[float],
    records: np.ndarray | None = None,
    calibration: bool = True,
) -> list[Path]:
    """The evaluate stage's tables in <run>/tables/ from attack → scores [T, N] (row i is target
    model i): thresholds, vulnerability_<attack>, precision_at_k, and calibration when the
    targets' logits are there. The record-level tables cover `records` (int pool indices; the
    evaluate stage passes the evaluated records without the DP audit's canaries), by default
    the split's evaluation records (eval_records.npy) or all; their `record` column keeps pool
    indices. calibration=False: no calibration table (a causal LM's two-class sequence signal
    has no classes to be accurate on)."""
    keep = load_npy(run.keep)
    if records is None:
        evaluated = load_npy(run.eval_records) if run.eval_records.is_file() else None
        records = np.arange(keep.shape[1]) if evaluated is None else np.flatnonzero(evaluated)
    keep = keep[:, records]
    targets = list(range(next(iter(scores.values())).shape[0]))
    scores = {name: s[:, records] for name, s in scores.items()}
    tables = evaluation_tables(scores, keep, targets, fprs)
    for table in tables.values():
        if "record" in table:
            table["record"] = records[table["record"].to_numpy()]
    if calibration and all(run.logits(t).is_file() for t in targets):
        logits = [load_npy(run.logits(t), mmap=True) for t in targets]
        labels, all_keep = load_npy(run.labels), load_npy(run.keep)  # every record: held-out data
        tables["calibration"] = calibration_table(logits, labels, all_keep, targets)
    return write_tables(run.root / TABLES_DIR, tables)
