"""compare.html: several runs (seeds, or a baseline against label smoothing or DP-SGD) in one table
and one ROC plot, and whether they expose the same records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from miakit.errors import MiakitError
from miakit.evaluate.metrics import long_rows
from miakit.evaluate.reproducibility import rank_stability, set_agreement
from miakit.evaluate.tables import write_tables
from miakit.evaluate.vulnerability import record_vulnerability
from miakit.report.figures import roc_figure
from miakit.report.html import decimal, figure_tag, flag_fpr, pct, render, table_tag
from miakit.report.runs import RunData, load_run
from miakit.report.training import privacy_utility
from miakit.store import save_text

#: ROC line style per attack; colour per run
LINESTYLES = ("-", "--", ":", "-.")


def run_labels(runs: Sequence[RunData]) -> list[str]:
    """Folder names, or full paths where two runs share a folder name."""
    names = [r.name for r in runs]
    return names if len(set(names)) == len(names) else [str(r.run.root) for r in runs]


def common_attacks(runs: Sequence[RunData]) -> list[str]:
    return [a for a in runs[0].scores if all(a in r.scores for r in runs[1:])]


def privacy_utility_table(runs: Sequence[RunData], labels: Sequence[str]) -> pd.DataFrame:
    """One row per run: its defences, the targets' utility (held-out test accuracy, or accuracy
    on non-members when the pool has no test split), ECE on non-members, and ε."""
    rows = []
    for data, label in zip(runs, labels, strict=True):
        figures = privacy_utility(data)
        test = figures["test_accuracy"]
        rows.append(
            {
                "run": label,
                "defences": figures["defences"],
                "test_accuracy": figures.get("pool_test_accuracy") if test is None else test,
                "ece": figures.get("pool_test_ece"),
                "epsilon": figures["epsilon"],
            }
        )
    return pd.DataFrame(rows)


def summary_table(
    runs: Sequence[RunData], labels: Sequence[str], privacy: pd.DataFrame
) -> pd.DataFrame:
    """Per attack and run: the privacy/utility figures (`privacy_utility_table`) next to AUC and
    TPR at low FPR."""
    utility = privacy.set_index("run")
    rows = []
    for data, label in zip(runs, labels, strict=True):
        own = utility.loc[label]
        audit = data.run.root / "audit.json"
        measured = json.loads(audit.read_text())["attacks"] if audit.is_file() else {}
        for attack, figures in data.metrics.items():
            row = {"attack": attack, "run": label, "AUC": decimal(figures["auc"]["mean"])}
            for x in data.fprs:
                row[f"TPR@FPR {x:g}"] = pct(figures[f"tpr@fpr={x:g}"]["mean"])
            shadow = figures.get(f"shadow_tpr@fpr={flag_fpr(data):g}")
            row["shadow TPR′"] = pct(shadow["mean"]) if shadow else "–"
            row["test accuracy"] = pct(own["test_accuracy"])
            row["ECE"] = "–" if pd.isna(own["ece"]) else decimal(own["ece"])
            row["ε"] = "–" if pd.isna(own["epsilon"]) else f"{own['epsilon']:.3g}"
            if attack in measured:  # a run audited with `miakit audit-dp`
                row["ε ≥ (one run)"] = f"{measured[attack]['one_run']['epsilon_lower']:.3g}"
            row["defences"] = own["defences"]
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["attack", "run"], kind="stable")


def agreement_tables(
    runs: Sequence[RunData], labels: Sequence[str], attacks: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Per attack, overlap of the highly vulnerable sets over combinations of runs, and Spearman
    correlation of records' mean member score between every two runs."""
    agreement, stability = [], []
    for attack in attacks:
        tables = [
            record_vulnerability(r.scores[attack], r.keep, r.targets, flag_fpr(r)) for r in runs
        ]
        masks = np.stack([t["highly_vulnerable"].to_numpy() for t in tables])
        overlap = set_agreement(masks)
        overlap.insert(0, "attack", attack)
        agreement.append(overlap)
        matrix = rank_stability(np.stack([t["mean_member_score"].to_numpy() for t in tables]))
        stability += [
            {"attack": attack, "run_a": labels[a], "run_b": labels[b], "spearman": matrix.iat[a, b]}
            for a, b in combinations(range(len(runs)), 2)
        ]
    return {
        "agreement": pd.concat(agreement, ignore_index=True),
        "rank_stability": pd.DataFrame(stability),
    }


def same_pool(runs: Sequence[RunData]) -> bool:
    """Record-level comparison needs one pool: the same fingerprint, or the same size when a run
    of brought-in models has none."""
    keys = {r.pool.get("fingerprint", r.keep.shape[1]) for r in runs}
    return len(keys) == 1 and len({r.keep.shape[1] for r in runs}) == 1


def compare_runs(run_dirs: Sequence[Path | str], out: Path | str) -> Path:
    """Write <out>/compare.html, compare.parquet (metrics.csv rows with a run column) and, when the
    runs share a pool, agreement and rank_stability tables; returns the HTML path."""
    if len(run_dirs) < 2:
        raise MiakitError(f"compare needs two runs or more, got {len(run_dirs)}")
    runs = [load_run(r) for r in run_dirs]
    labels = run_labels(runs)
    out = Path(out)
    long = pd.concat(
        [
            pd.DataFrame(long_rows(r.metrics)).assign(run=label)
            for r, label in zip(runs, labels, strict=True)
        ],
        ignore_index=True,
    )
    tables = {"compare": long, "privacy_utility": privacy_utility_table(runs, labels)}
    attacks = common_attacks(runs)
    curves, styles = {}, {}
    for a, attack in enumerate(attacks):
        for r, (data, label) in enumerate(zip(runs, labels, strict=True)):
            key = f"{label}: {attack}"
            curves[key] = (data.scores[attack].ravel(), data.keep[data.targets].ravel())
            styles[key] = {"color": f"C{r % 10}", "ls": LINESTYLES[a % len(LINESTYLES)]}
    sections = [
        ("Summary", table_tag(summary_table(runs, labels, tables["privacy_utility"]))),
        (
            "ROC curves (log-log, targets pooled)",
            figure_tag(roc_figure(curves, 1 / min(r.keep.shape[1] for r in runs), styles), "ROC"),
        ),
    ]
    if same_pool(runs) and attacks and all(len(r.targets) >= 2 for r in runs):
        tables |= agreement_tables(runs, labels, attacks)
        sections.append(
            (
                "Do the runs expose the same records?",
                table_tag(tables["agreement"])
                + '<p class="note">Highly vulnerable sets (shadow-calibrated); per combination '
                "size, the mean over all combinations of runs of the intersection, union and "
                "Jaccard index.</p>"
                + table_tag(tables["rank_stability"])
                + '<p class="note">Spearman correlation of records\' mean score as members.</p>',
            )
        )
    else:
        sections.append(
            (
                "Do the runs expose the same records?",
                '<p class="note">The runs do not share one pool and two targets or more each, so records cannot be compared.</p>',
            )
        )
    write_tables(out, tables)
    path = out / "compare.html"
    save_text(path, render(f"miakit: {len(runs)} runs compared", sections))
    return path
