"""The public API on a run directory: `Run`, what `miakit status`, `evaluate` and `report` show,
as Python objects (DataFrames, arrays, the verdict, matplotlib figures), and in Jupyter its
verdict and ROC figure."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from miakit import pipeline
from miakit.config import AuditConfig
from miakit.errors import MiakitError
from miakit.evaluate.metrics import long_rows
from miakit.report.verdict import Verdict
from miakit.store import RunDir, load_npy


class Run:
    """An audit's run directory (planned by `miakit audit` or `miakit.audit`, or a directory of
    brought-in models: keep.npy, labels.npy and models/<mmmm>/logits.npy).

    Everything read is checked current first, as the CLI's stages check it: stale or missing
    scores and metrics are a MiakitError naming the command that makes them current.
    Record-level figures speak for the evaluated records (the split's evaluation records, less
    the DP audit's canaries), with their pool indices.

    Args:
        path: the run directory.

    Raises:
        MiakitError: `path` holds neither run.yaml nor keep.npy.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._run = RunDir(self.path)
        if not self._run.run_yaml.is_file():
            pipeline.brought_in_status(self._run)  # without keep.npy: the error naming both

    def __repr__(self) -> str:
        return f"miakit.Run({str(self.path)!r})"

    @property
    def config(self) -> AuditConfig:
        """The run's resolved config (run.yaml), or the defaults for brought-in models."""
        return pipeline.run_config(self._run)

    @property
    def keep(self) -> np.ndarray:
        """The keep matrix, bool [M, N]: keep[m, n] when model m trained on pool record n."""
        return load_npy(self._run.keep)

    @property
    def labels(self) -> np.ndarray:
        """The pool records' labels, int [N]."""
        return load_npy(self._run.labels)

    @property
    def status(self) -> dict[str, list[int]] | dict[str, str]:
        """As `miakit status`: for a planned run, model indices by state (done, running, running
        elsewhere, dead lock, stale, missing); for brought-in models, part → what is there."""
        if not self._run.run_yaml.is_file():
            return pipeline.brought_in_status(self._run)
        return pipeline.status(self._run)

    @property
    def metrics(self) -> pd.DataFrame:
        """metrics.csv's rows, one per (attack, figure): attack, metric, mean, std, n_targets,
        ci_low, ci_high, not_measurable (`miakit.evaluate` describes the columns).

        Raises:
            MiakitError: no metrics.json, or one that is stale (`miakit evaluate` names it).
        """
        pipeline.check_metrics(self._run)
        stored = json.loads(self._run.metrics_json.read_text())
        return pd.DataFrame(long_rows(stored["attacks"]))

    @property
    def attacks(self) -> list[str]:
        """The evaluated attacks, as metrics.json lists them."""
        pipeline.check_metrics(self._run)
        return list(json.loads(self._run.metrics_json.read_text())["attacks"])

    def scores(self, attack: str) -> np.ndarray:
        """The attack's scores, float [T, N] (scores/<attack>.npy; row i: target model i,
        higher = more likely member; NaN on records the split does not score).

        Raises:
            MiakitError: an unknown attack, scores missing, stale or skipped (with the reason).
        """
        return pipeline.current_scores(self._run, attack)

    def _evaluated(self, attacks: list[str] | None = None):
        """The evaluated run (`report.runs.RunData`), checked current, and holding `attacks`."""
        from miakit.report.runs import load_run

        pipeline.check_metrics(self._run)
        data = load_run(self._run.root)
        missing = [a for a in attacks or [] if a not in data.scores]
        if missing:
            raise MiakitError(
                f"{missing[0]!r} is not evaluated in {self.path}; evaluated: "
                f"{', '.join(data.scores)}"
            )
        return data

    def records(self, attack: str) -> pd.DataFrame:
        """Per-record exposure to the attack, one row per evaluated record, most exposed first:
        record (pool index), label, n_member and n_nonmember (targets that did and did not train
        on it), tp and fp (those calling it member under the attack's shadow-calibrated
        threshold, set on the other targets, at `fpr`), exposure (tp / n_member), mean_member_score,
        highly_vulnerable (tp > 0 and fp = 0: the verdict's exposed records), rank (1 = most
        exposed), fpr (the verdict's: 0.1% where the data resolve it; Carlini et al. 2022's
        realistic-LiRA criterion, `evaluate.vulnerability`).

        Raises:
            MiakitError: stale metrics, an attack not evaluated, fewer than two targets.
        """
        from miakit.evaluate.vulnerability import record_vulnerability
        from miakit.report.verdict import operating_fpr

        data = self._evaluated([attack])
        if len(data.targets) < 2:
            raise MiakitError(
                "per-record exposure needs two target models or more (each target's threshold "
                "is set on the others)"
            )
        x = operating_fpr(data.metrics[attack], data.fprs)
        table = record_vulnerability(data.scores[attack], data.keep, data.targets, x)
        rows = table["record"].to_numpy()
        table = table.assign(
            record=rows if data.evaluated is None else data.evaluated[rows],
            label=data.labels[rows],
            exposure=table["tp"] / table["n_member"],
            fpr=x,
        )
        columns = ["record", "label", "n_member", "n_nonmember", "tp", "fp", "exposure"]
        rest = [c for c in table.columns if c not in columns]
        return table[columns + rest].sort_values("rank").reset_index(drop=True)

    @property
    def verdict(self) -> Verdict:
        """The `Verdict` the CLI prints and report.html opens with: `.sentences()` in plain words, and their numbers as fields (attack, auc, tpr by
        FPR, ppv by prior, exposed, exposed_by_chance, top, train_accuracy, test_accuracy,
        smallest_fpr, next_step, …; rates as fractions).

        Raises:
            MiakitError: no metrics.json, or a stale one.
        """
        pipeline.check_metrics(self._run)
        return pipeline.verdict(self._run)

    def roc(self, attack: str) -> pd.DataFrame:
        """Each target's full ROC on the evaluated records (one point per distinct score, ties
        together, no interpolation): target, fpr, tpr, threshold (call member when score ≥
        threshold), false_positives, in order of decreasing threshold from (0, 0).

        Raises:
            MiakitError: stale metrics, or an attack not evaluated.
        """
        from miakit.evaluate.roc import roc_curve

        data = self._evaluated([attack])
        parts = []
        for i, t in enumerate(data.targets):
            roc = roc_curve(data.scores[attack][i], data.keep[t])
            parts.append(
                pd.DataFrame(
                    {
                        "target": t,
                        "fpr": roc.fpr,
                        "tpr": roc.tpr,
                        "threshold": roc.thresholds,
                        "false_positives": roc.false_positives,
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    def plot_roc(self, attacks: list[str] | None = None):
        """The report's log-log ROC figure (a matplotlib Figure): one curve per attack (default
        every evaluated one), all targets pooled, the strongest drawn thickest (Carlini et al.
        2022: the low-FPR corner is what matters for privacy).

        Raises:
            MiakitError: stale metrics, or an attack not evaluated.
        """
        from miakit.report.figures import roc_figure
        from miakit.report.verdict import strongest_attack

        data = self._evaluated(attacks)
        members = data.keep[data.targets].ravel()
        curves = {a: (data.scores[a].ravel(), members) for a in attacks or data.scores}
        strongest = strongest_attack(data.metrics, data.fprs)
        return roc_figure(curves, floor=1 / data.keep.shape[1], strongest=strongest)

    def report(self) -> Path:
        """Write (or keep, when current) the run's self-contained report.html, as `miakit
        report`; returns its path.

        Raises:
            MiakitError: stale metrics, or a stale DP audit (audit.json).
        """
        return pipeline.report(self._run)

    def _repr_html_(self) -> str:
        """Jupyter's view: the verdict and the ROC figure; before `evaluate`, the run's state."""
        title = f"<h4>miakit run {html.escape(str(self.path))}</h4>"
        try:
            found = self.verdict
        except MiakitError as exc:
            state = json.dumps(self.status, indent=1)
            return f"{title}<p>{html.escape(str(exc))}</p><pre>{html.escape(state)}</pre>"
        from miakit.report.figures import png_base64

        sentences = "".join(f"<li>{html.escape(s)}</li>" for s in found.sentences())
        figure = png_base64(self.plot_roc())
        return (
            f"{title}<ul>{sentences}</ul>"
            f'<img alt="ROC curves" style="max-width:480px" src="data:image/png;base64,{figure}">'
        )
