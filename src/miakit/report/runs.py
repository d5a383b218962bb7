"""What a report reads from a run directory, loaded once and checked, with one clear error when a
stage has not run yet."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from miakit.architectures import TEXT_ARCHITECTURES
from miakit.errors import MiakitError
from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.tables import calibration_table
from miakit.store import RunDir, document_changed, load_npy


@dataclass(frozen=True)
class RunData:
    """A run's evaluated attacks: scores [T, N] per attack (row i is target model i), keep [M, N],
    labels [N], metrics.json's per-attack figures, and the run's config and pool description.

    Where the split scores only part of the pool (disjoint), N counts the evaluated records only:
    `evaluated` holds their pool indices, and every per-record array here is restricted to them.
    """

    run: RunDir
    keep: np.ndarray
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    metrics: dict[str, dict]
    config_text: str
    pool: dict
    evaluated: np.ndarray | None = None
    #: What the intervals in metrics.json are of (`intervals.INTERVAL_NOTE`).
    interval_note: str | None = None
    #: Attack → a caveat to show next to its figures (e.g. too few models for online LiRA).
    warnings: dict[str, str] = field(default_factory=dict)
    #: Attack → why it was not scored on this run's `query.output` (metrics.json's `skipped`).
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.run.root.name

    @property
    def targets(self) -> list[int]:
        return list(range(next(iter(self.scores.values())).shape[0]))

    @property
    def fprs(self) -> list[float]:
        """The FPRs metrics.json reports TPR at, smallest first."""
        figures = next(iter(self.metrics.values()))
        keys = [MetricKey.parse(name) for name in figures]
        return sorted(k.fpr for k in keys if k.name == "tpr" and k.fpr is not None)

    @cached_property
    def calibration(self) -> pd.DataFrame | None:
        """Accuracy, ECE and overconfidence of each target on its members and non-members
        (`calibration_table`), computed once for every section that shows it; None without
        logits, and for causal language models (whose two-class sequence signal has no classes
        to be accurate on)."""
        logits = self.target_logits()
        if logits is None or language_model_run(self.config_text):
            return None
        return calibration_table(logits, self.labels, self.keep, self.targets)

    def target_logits(self) -> list[np.ndarray] | None:
        """Logits [N, A, C] of each target on the evaluated records (memory-mapped when they are
        the whole pool), or None when some are missing."""
        paths = [self.run.logits(t) for t in self.targets]
        if not all(p.is_file() for p in paths):
            return None
        logits = [load_npy(p, mmap=True) for p in paths]
        return logits if self.evaluated is None else [m[self.evaluated] for m in logits]


def evaluated_records(run: RunDir, metrics: dict, num_records: int) -> np.ndarray | None:
    """Int pool indices of the records metrics.json (`metrics`) speaks for, or None for all: a
    split's evaluation records (eval_records.npy), less the DP audit's canaries that evaluate
    left out (metrics["canaries_left_out"])."""
    left_out = (metrics.get("canaries_left_out") or {}).get("records", [])
    if not (run.eval_records.is_file() or left_out):
        return None
    mask = np.ones(num_records, dtype=bool)
    if run.eval_records.is_file():
        mask = load_npy(run.eval_records).astype(bool)
    mask[left_out] = False
    return np.flatnonzero(mask)


def load_run(root: Path | str) -> RunData:
    run = RunDir(root)
    if not run.metrics_json.is_file():
        raise MiakitError(f"{run.root} has no metrics.json; run `miakit evaluate {run.root}` first")
    try:
        stored = json.loads(run.metrics_json.read_text())
        metrics = stored["attacks"]
    except (ValueError, KeyError) as exc:
        raise MiakitError(
            f"{run.metrics_json} is unreadable ({exc}); rerun `miakit evaluate`"
        ) from exc
    if not metrics:
        raise MiakitError(f"{run.metrics_json} holds no attacks; rerun `miakit evaluate`")
    changed = document_changed(stored, run.root) if "content_hash" in stored else None
    if changed is not None:
        raise MiakitError(
            f"{run.metrics_json} is stale ({changed}); run `miakit evaluate {run.root}` to make "
            "it current"
        )
    keep = load_npy(run.keep)
    scores = {name: load_npy(run.scores(name)) for name in metrics}
    for name, s in scores.items():
        if s.ndim != 2 or s.shape[1] != keep.shape[1] or s.shape[0] > keep.shape[0]:
            raise MiakitError(
                f"{run.scores(name)} has shape {s.shape}, expected [T <= {keep.shape[0]}, "
                f"{keep.shape[1]}]; rerun `miakit attack` and `miakit evaluate`"
            )
    labels = load_npy(run.labels)
    evaluated = evaluated_records(run, stored, keep.shape[1])
    if evaluated is not None:
        keep, labels = keep[:, evaluated], labels[evaluated]
        scores = {name: s[:, evaluated] for name, s in scores.items()}
    return RunData(
        run=run,
        keep=keep,
        labels=labels,
        scores=scores,
        metrics=metrics,
        config_text=run.run_yaml.read_text() if run.run_yaml.is_file() else "",
        pool=json.loads(run.pool.read_text()) if run.pool.is_file() else {},
        evaluated=evaluated,
        interval_note=stored.get("intervals"),
        warnings=stored.get("warnings", {}),
        skipped=stored.get("skipped", {}),
    )


def model_arch(config_text: str) -> str | None:
    """run.yaml's model.arch, None where it names none (or run.yaml is no mapping)."""
    try:
        config = yaml.safe_load(config_text or "") or {}
    except yaml.YAMLError:
        return None
    model = config.get("model") if isinstance(config, dict) else None
    return model.get("arch") if isinstance(model, dict) else None


def language_model_run(config_text: str) -> bool:
    """run.yaml's model is a causal LM: arch gpt, or an hf arch with task causal-lm."""
    try:
        config = yaml.safe_load(config_text or "") or {}
    except yaml.YAMLError:
        return False
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        return False
    return model.get("arch") in TEXT_ARCHITECTURES or model.get("task") == "causal-lm"
