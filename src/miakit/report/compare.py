"""compare.html: several runs (seeds, or a baseline against label smoothing or DP-SGD) in one table
and one ROC plot, and whether they expose the same records."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from miakit.errors import MiakitError
from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.metrics import long_rows
from miakit.evaluate.reproducibility import rank_stability, set_agreement
from miakit.evaluate.tables import write_tables
from miakit.evaluate.vulnerability import record_vulnerability
from miakit.report.figures import roc_figure
from miakit.report.html import (
    TEST_ACCURACY,
    decimal,
    figure_tag,
    figure_text,
    flag_fpr,
    pct,
    render,
    table_tag,
)
from miakit.report.runs import RunData, load_run
from miakit.report.training import privacy_utility
from miakit.report.verdict import strongest_attack
from miakit.store import clear_leftovers, document_changed, save_text

#: ROC line style per attack; colour per run
LINESTYLES = ("-", "--", ":", "-.")


def run_labels(runs: Sequence[RunData]) -> list[str]:
    """Folder names, or full paths where two runs share a folder name."""
    names = [r.name for r in runs]
    return names if len(set(names)) == len(names) else [str(r.run.root) for r in runs]


def common_attacks(runs: Sequence[RunData]) -> list[str]:
    return [a for a in runs[0].scores if all(a in r.scores for r in runs[1:])]


def privacy_utility_table(runs: Sequence[RunData], labels: Sequence[str]) -> pd.DataFrame:
    """One row per run: its defences, the targets' utility (test accuracy: on their non-members,
    as everywhere in a report; test-split accuracy: on the data set's test split, where it has
    one), ECE on non-members, ε, and its strongest attack (`report.verdict.strongest_attack`
    over the attacks every run has) with its AUC and TPR at 1% and 0.1% FPR."""
    attacks = common_attacks(runs)
    rows = []
    for data, label in zip(runs, labels, strict=True):
        figures = privacy_utility(data)
        # runs on different query outputs may share no attack: then each run's own strongest
        strongest = strongest_attack(
            {a: data.metrics[a] for a in attacks or data.metrics}, data.fprs
        )
        attack = data.metrics[strongest]
        rows.append(
            {
                "run": label,
                "data": data.pool.get("name", "–"),
                "output": query_output(data),
                "defences": figures["defences"],
                "test_accuracy": figures.get("pool_test_accuracy"),
                "test_split_accuracy": figures["test_accuracy"],
                "ece": figures.get("pool_test_ece"),
                "epsilon": figures["epsilon"],
                "strongest_attack": strongest,
                "auc": attack["auc"]["mean"],
                **{
                    key: attack[key]["mean"]
                    for key in (str(MetricKey("tpr", fpr=x)) for x in (0.01, 0.001))
                    if key in attack
                },
            }
        )
    return pd.DataFrame(rows)


def query_output(data: RunData) -> str:
    """The run's `query.output` (logits where run.yaml does not say: brought-in models)."""
    config = yaml.safe_load(data.config_text) if data.config_text else None
    return ((config or {}).get("query") or {}).get("output", "logits")


def _audit_figures(path: Path) -> dict:
    """The per-attack figures of a run's audit.json ({} without one); MiakitError naming
    `miakit audit-dp` when it was changed since it was written."""
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    changed = document_changed(stored, path.parent) if "content_hash" in stored else None
    if changed is not None:
        raise MiakitError(
            f"{path} is stale ({changed}); run `miakit audit-dp {path.parent}` to make it current"
        )
    return stored["attacks"]


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
        measured = _audit_figures(audit)
        for attack, figures in data.metrics.items():
            row = {"attack": attack, "run": label, "AUC": decimal(figures["auc"]["mean"])}
            for x in data.fprs:
                row[f"TPR@FPR {x:g}"] = figure_text(figures[str(MetricKey("tpr", fpr=x))])
            shadow_tpr = figures.get(str(MetricKey("shadow_tpr", fpr=flag_fpr(data))))
            row["shadow TPR′"] = figure_text(shadow_tpr)
            row["test accuracy"] = pct(own["test_accuracy"])
            row["test-split accuracy"] = pct(own["test_split_accuracy"])
            row["ECE"] = "–" if pd.isna(own["ece"]) else decimal(own["ece"])
            row["ε"] = "–" if pd.isna(own["epsilon"]) else f"{own['epsilon']:.3g}"
            if attack in measured:  # a run audited with `miakit audit-dp`
                row["ε ≥ (one run)"] = f"{measured[attack]['one_run']['epsilon_lower']:.3g}"
            row["defences"] = own["defences"]
            rows.append(row)
        for attack, reason in data.skipped.items():
            rows.append({"attack": attack, "run": label, "AUC": "–", "skipped": reason})
    table = pd.DataFrame(rows)
    if "skipped" in table:  # attacks a run's query.output could not feed, with why
        table = table.fillna({"skipped": ""}).fillna("–")
    return table.sort_values(["attack", "run"], kind="stable")


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


@dataclass(frozen=True)
class Comparison:
    """What `compare_runs` wrote: the page, the privacy/utility table (one row per run), and
    warnings a reader must see (runs on different records of one data set)."""

    path: Path
    privacy_utility: pd.DataFrame
    warnings: list[str]


def check_same_data(runs: Sequence[RunData], labels: Sequence[str]) -> list[str]:
    """Runs on different data sets are not comparable: one error naming each run's data set.
    Runs on one data set but different records (another subsample, another pool) get a
    warning."""
    names = {label: r.pool.get("name") for r, label in zip(runs, labels, strict=True)}
    if len(set(names.values())) > 1:
        listed = ", ".join(f"{label}: {name or 'unknown'}" for label, name in names.items())
        raise MiakitError(
            f"these runs audit different data sets ({listed}); their attack and accuracy "
            "figures are not comparable. Compare runs on one data set"
        )
    if not same_pool(runs):
        return [
            "the runs' pools differ (another subsample or other records of the data set): "
            "their figures compare as audits of the same task, not record by record"
        ]
    return []


def compare_runs(run_dirs: Sequence[Path | str], out: Path | str) -> Comparison:
    """Write <out>/compare.html, compare.parquet (metrics.csv rows with a run column), the
    privacy/utility table and, when the runs share a pool, agreement and rank_stability tables.
    Raises MiakitError for fewer than two runs, or runs on different data sets."""
    if len(run_dirs) < 2:
        raise MiakitError(f"compare needs two runs or more, got {len(run_dirs)}")
    runs = [load_run(r) for r in run_dirs]
    labels = run_labels(runs)
    warnings = check_same_data(runs, labels)
    out = Path(out)
    clear_leftovers(out)
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
    notes = "".join(f'<p class="note"><b>Warning:</b> {html.escape(w)}.</p>' for w in warnings)
    sections = [
        (
            "Summary",
            notes
            + table_tag(summary_table(runs, labels, tables["privacy_utility"]))
            + f'<p class="note">{TEST_ACCURACY}</p>',
        ),
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
    return Comparison(path, tables["privacy_utility"], warnings)
