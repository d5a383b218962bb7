"""The audit's stages as functions over a run directory; the CLI and the Python API both call these.

plan → train → query → attack → evaluate. Each stage is idempotent: train and query skip models
whose meta.json records the current content hash, and redo the rest; attack and evaluate are cheap
next to training and always recompute, so they never serve stale results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from rich.progress import Progress

from miakit.attacks import make_attack
from miakit.config import AuditConfig, ExecutionConfig, read_run_config
from miakit.data import resolve_data_dir
from miakit.data.catalog import fetch as fetch_dataset
from miakit.data.catalog import list_datasets
from miakit.errors import MiakitError
from miakit.evaluate.intervals import INTERVAL_NOTE
from miakit.evaluate.metrics import (
    aggregate,
    long_rows,
    mark_unmeasurable,
    small_m_warning,
    summarize,
    unmeasurable,
)
from miakit.evaluate.tables import write_evaluation_tables
from miakit.executors import Executor, LocalExecutor, ProcessExecutor, TaskFailure
from miakit.ood_study import ood_study
from miakit.plan import (
    Plan,
    evaluation_design,
    load_configured_pool,
    load_plan,
    model_done,
    outdated_models,
    plan,
)
from miakit.progress import ProgressLines, progress, tracked
from miakit.signals import Signals
from miakit.store import RunDir, load_npy, save_json, save_npy, write_atomic

if TYPE_CHECKING:
    from miakit.report.compare import Comparison
    from miakit.report.verdict import Verdict

# Modules that import torch, opacus or matplotlib are imported in the stages that use them, so
# that commands which train nothing (status, attack, report, --help) start in a fraction of the
# time (tests/test_cli_imports.py holds this).

__all__ = [
    "attack",
    "audit",
    "compare",
    "evaluate",
    "fetch_dataset",
    "list_datasets",
    "load_plan",
    "plan",
    "query",
    "report",
    "resolve_data_dir",
    "run_single_point",
    "status",
    "train",
]


@contextmanager
def progress_bar() -> Iterator[Progress | ProgressLines]:
    """A live bar on a terminal; lines with rate and time left in a pipe or a log."""
    with progress() as bar:
        yield bar


def shard_models(num_models: int, shard: tuple[int, int] | None) -> list[int]:
    """Shard i of n: the i-th of n contiguous, disjoint slices of the models (all when None)."""
    if shard is None:
        return list(range(num_models))
    index, count = shard
    if not 0 <= index < count:
        raise MiakitError(f"--shard {index}/{count}: expected i/n with 0 <= i < n")
    return [int(m) for m in np.array_split(np.arange(num_models), count)[index]]


def make_executor(settings: ExecutionConfig) -> Executor:
    if settings.executor == "processes":
        return ProcessExecutor(settings.workers, settings.threads_per_worker, settings.retries)
    if settings.executor == "ray":
        from miakit.executors.ray import RayExecutor

        return RayExecutor(
            settings.ray_address, settings.cpus_per_task, settings.gpus_per_task, settings.retries
        )
    return LocalExecutor()


def _run_model_jobs(
    plan: Plan, run: RunDir, stage: str, models: list[int], in_process, task_fn
) -> list[int]:
    """Run a stage's model jobs on the configured executor, groups of models per task."""
    from miakit.train.trainer import resolve_device

    settings = plan.config.execution
    resolve_device(plan.config.train.device)  # a bad device is one error, not one per model
    size = settings.models_per_task
    groups = [models[i : i + size] for i in range(0, len(models), size)]
    local = settings.executor == "local"
    fn = partial(in_process, plan, run) if local else partial(task_fn, str(run.root))
    done: list[int] = []
    with progress_bar() as bar:
        task = bar.add_task(stage, total=len(models))

        def on_result(group: list[int], result: list[int]) -> None:
            done.extend(result)
            bar.advance(task, len(group))

        def on_failure(failure: TaskFailure) -> None:
            bar.console.print(f"[red]{stage} failed for models {failure.task}:[/] {failure.error}")
            bar.advance(task, len(failure.task))

        failures = make_executor(settings).run(fn, groups, on_result, on_failure)
    if failures:
        failed = [m for f in failures for m in f.task]
        raise MiakitError(
            f"{stage}: {len(failed)} models failed (models {failed[:10]}); the others are "
            f"saved, rerun to redo these. First error: {failures[0].error}"
        )
    return done


def train(plan: Plan, run: RunDir, shard: tuple[int, int] | None = None) -> list[int]:
    """Train every model (of the shard) whose meta.json does not match its training inputs."""
    from miakit import jobs
    from miakit.transfer import shared_features

    todo = [
        m
        for m in shard_models(len(plan.keep), shard)
        if not model_done(run, m, "train_hash", plan.train_hash(m))
    ]
    if todo and plan.config.defences.transfer.enabled:
        shared_features(plan, run)  # built once here: a bad setting is one error, not one a task
    return _run_model_jobs(plan, run, "training", todo, jobs.train_models, jobs.train_task)


def query(plan: Plan, run: RunDir, shard: tuple[int, int] | None = None) -> list[int]:
    """Write logits.npy for every trained model (of the shard) whose logits are missing or stale."""
    from miakit import jobs

    todo = []
    for m in shard_models(len(plan.keep), shard):
        if not model_done(run, m, "train_hash", plan.train_hash(m)):
            raise MiakitError(f"model {m} of {run.root} is not trained; run `miakit train` first")
        if not (model_done(run, m, "query_hash", plan.query_hash(m)) and run.logits(m).is_file()):
            todo.append(m)
    return _run_model_jobs(plan, run, "querying", todo, jobs.query_models, jobs.query_task)


def status(run: RunDir) -> dict[str, list[int]]:
    """Models of a planned run by state: done, running (locked), stale, missing."""
    planned = load_plan(run)
    states: dict[str, list[int]] = {"done": [], "running": [], "stale": [], "missing": []}
    for m in range(len(planned.keep)):
        if model_done(run, m, "query_hash", planned.query_hash(m)) and run.logits(m).is_file():
            states["done"].append(m)
        elif run.lock(m).is_file():
            states["running"].append(m)
        elif run.meta(m).is_file():
            states["stale"].append(m)
        else:
            states["missing"].append(m)
    return states


def trained_models(run: RunDir) -> tuple[int, int]:
    """(models trained and current, models planned) of a planned run: what an interrupted
    `miakit audit` or `miakit train` has saved."""
    planned = load_plan(run)
    done = sum(
        model_done(run, m, "train_hash", planned.train_hash(m)) for m in range(len(planned.keep))
    )
    return done, len(planned.keep)


def brought_in_status(run: RunDir) -> dict[str, str]:
    """What a run of brought-in models (keep.npy, no run.yaml) holds, and the command that
    makes each missing part: models with logits and loss traces, scores, metrics, report."""
    if not run.keep.is_file():
        raise MiakitError(
            f"{run.root} is no run: it has neither run.yaml (plan one with `miakit audit --out "
            f"{run.root}`) nor keep.npy (bring your own models: see the README)"
        )
    keep = load_npy(run.keep, mmap=True)
    count = keep.shape[0]
    logits = [m for m in range(count) if run.logits(m).is_file()]
    traces = sum(run.trace(m).is_file() for m in range(count))
    scores = sorted(p.stem for p in run.scores_dir.glob("*.npy"))
    missing = sorted(set(range(count)) - set(logits))
    return {
        "models": f"{count} in keep.npy, over {keep.shape[1]} records (brought in: no run.yaml)",
        "with logits": f"{len(logits)} of {count}"
        + (f" (missing, e.g. model {missing[0]})" if missing else ""),
        "with loss traces": f"{traces} of {count}",
        "scores": ", ".join(scores) or "none: run `miakit attack`",
        "metrics": "metrics.json" if run.metrics_json.is_file() else "none: run `miakit evaluate`",
        "report": "report.html"
        if (run.root / "report.html").is_file()
        else "none: run `miakit report`",
    }


def run_config(run: RunDir) -> AuditConfig:
    """The run's config, or the defaults for a run of brought-in models (no run.yaml)."""
    return read_run_config(run.run_yaml) if run.run_yaml.is_file() else AuditConfig()


def attack(run: RunDir, config: AuditConfig, attacks: Sequence[str] | None = None) -> list[str]:
    """Score every target with each attack; writes scores/<attack>.npy [T, N] (row i: target i of
    the design). References are every other model (leave-one-out) unless the split names them."""
    names = list(attacks or config.attacks)
    if run.run_yaml.is_file():  # a run miakit trains: never attack stale or missing logits
        outdated = outdated_models(run)
        if outdated:
            raise MiakitError(
                f"{len(outdated)} models of {run.root} (e.g. model {outdated[0]}) have missing "
                "or stale logits; finish the run with `miakit audit`, or `miakit train` and "
                "`miakit query`"
            )
    instances = {n: make_attack(n, config.attack_options.get(n)) for n in names}
    signals = Signals.from_run(run)
    design = evaluation_design(run, config, signals.num_models)
    with progress_bar() as bar:
        task = bar.add_task("attacking", total=len(names))
        for name, instance in instances.items():
            scores = instance.score_targets(signals, design.targets, design.references)
            save_npy(run.scores(name), scores)
            bar.advance(task)
    return names


def evaluate(run: RunDir, config: AuditConfig, attacks: Sequence[str] | None = None) -> dict:
    """metrics.json, metrics.csv and a log-log ROC plot per attack, from the stored scores
    (restricted to the split's evaluation records, where it has them)."""
    from miakit.report.plots import plot_roc

    keep = load_npy(run.keep)
    design = evaluation_design(run, config, len(keep))
    records = slice(None) if design.eval_records is None else design.eval_records
    metrics = {}
    for name in tracked(attacks or config.attacks, "evaluating"):
        if not run.scores(name).is_file():
            raise MiakitError(f"no scores for {name!r} in {run.root}; run `miakit attack` first")
        scores = load_npy(run.scores(name))
        if scores.shape != (len(design.targets), keep.shape[1]):
            raise MiakitError(
                f"{run.scores(name)} has shape {scores.shape}, expected "
                f"[{len(design.targets)} targets, {keep.shape[1]} records]; rerun `miakit attack`"
            )
        scores, members = scores[:, records], keep[:, records]
        metrics[name] = summarize(scores, members, design.targets, config.evaluate.fprs)
        plot_roc(run.plots / f"roc_{name}.png", name, scores, members, design.targets)
    skipped: dict[str, str] = {}
    if config.evaluate.ood and run.run_yaml.is_file():
        from miakit import jobs

        ood, skipped = ood_study(load_plan(run), run, config, list(metrics), jobs.query_all)
        evaluated = keep[:, records]
        non_members = int(min((~evaluated[t]).sum() for t in design.targets))
        reasons = unmeasurable(config.evaluate.fprs, non_members)
        for name, figures in ood.items():
            ood_summary = {key: aggregate(values) for key, values in figures.items()}
            metrics[name] |= mark_unmeasurable(ood_summary, reasons)
    warnings = {
        name: text
        for name in metrics
        if (text := small_m_warning(name, len(keep), design.references is None))
    }
    save_json(
        run.metrics_json,
        {
            "attacks": metrics,
            "intervals": INTERVAL_NOTE,
            "warnings": warnings,
            "ood_skipped": skipped,
        },
    )
    write_atomic(
        run.metrics_csv, lambda tmp: pd.DataFrame(long_rows(metrics)).to_csv(tmp, index=False)
    )
    all_scores = {name: load_npy(run.scores(name)) for name in metrics}
    write_evaluation_tables(run, all_scores, config.evaluate.fprs)
    return metrics


def report(run: RunDir, single_point: Sequence[Path] = ()) -> Path:
    """report.html: one self-contained page (figures embedded), with the most exposed records
    shown as pictures where the records are pictures (else as feature rows), and the with/without experiments in `single_point`
    (output folders of `miakit single-point`)."""
    from miakit.report.html import write_report

    images = features = None
    if run.run_yaml.is_file():
        pool = load_configured_pool(read_run_config(run.run_yaml))
        evaluated = load_npy(run.eval_records) if run.eval_records.is_file() else slice(None)
        pictures = pool.pictures()  # the report sees the evaluated records only
        if pictures is not None:
            images = pictures[evaluated]
        else:
            features = pool.x[evaluated]
    return write_report(run.root, images=images, features=features, single_point=single_point)


def verdict(run: RunDir) -> Verdict:
    """The evaluated run's verdict (`miakit.report.verdict`): what the CLI prints first."""
    from miakit.report.runs import load_run
    from miakit.report.verdict import verdict as run_verdict

    return run_verdict(load_run(run.root))


def compare(runs: Sequence[RunDir], out: Path) -> Comparison:
    """compare.html and compare.parquet/.csv over several evaluated runs (a
    `report.compare.Comparison`); runs on different data sets are an error."""
    from miakit.report.compare import compare_runs

    return compare_runs([r.root for r in runs], out)


def run_single_point(config, out: Path, **callbacks):
    """`miakit.single_point.run_single_point` (imported when called: it needs torch)."""
    from miakit.single_point import run_single_point as run

    return run(config, out, **callbacks)


def audit(config: AuditConfig, run: RunDir) -> dict:
    """plan → train → query → attack → evaluate → report; returns the metrics."""
    planned = plan(config, run)
    train(planned, run)
    query(planned, run)
    attack(run, config)
    metrics = evaluate(run, config)
    report(run)
    return metrics
