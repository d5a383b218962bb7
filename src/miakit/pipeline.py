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

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from miakit import jobs
from miakit.attacks import make_attack
from miakit.config import AuditConfig, ExecutionConfig, read_run_config
from miakit.data import resolve_data_dir
from miakit.data.catalog import fetch as fetch_dataset
from miakit.data.catalog import list_datasets
from miakit.errors import MiakitError
from miakit.evaluate.metrics import aggregate, long_rows, summarize
from miakit.evaluate.tables import write_evaluation_tables
from miakit.executors import Executor, LocalExecutor, ProcessExecutor, TaskFailure
from miakit.executors.ray import RayExecutor
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
from miakit.privacy_audit import audit_dp
from miakit.report.compare import compare_runs
from miakit.report.html import write_report
from miakit.report.plots import plot_roc
from miakit.signals import Signals
from miakit.single_point import run_single_point
from miakit.store import RunDir, load_npy, save_json, save_npy, write_atomic
from miakit.train.trainer import resolve_device
from miakit.transfer import shared_features

__all__ = [
    "attack",
    "audit",
    "audit_dp",
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
def progress_bar() -> Iterator[Progress]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
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
        return RayExecutor(
            settings.ray_address, settings.cpus_per_task, settings.gpus_per_task, settings.retries
        )
    return LocalExecutor()


def _run_model_jobs(
    plan: Plan, run: RunDir, stage: str, models: list[int], in_process, task_fn
) -> list[int]:
    """Run a stage's model jobs on the configured executor, groups of models per task."""
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
    keep = load_npy(run.keep)
    design = evaluation_design(run, config, len(keep))
    records = slice(None) if design.eval_records is None else design.eval_records
    metrics = {}
    for name in attacks or config.attacks:
        if not run.scores(name).is_file():
            raise MiakitError(f"no scores for {name!r} in {run.root}; run `miakit attack` first")
        scores = load_npy(run.scores(name))
        if scores.shape != (len(design.targets), keep.shape[1]):
            raise MiakitError(
                f"{run.scores(name)} has shape {scores.shape}, expected "
                f"[{len(design.targets)} targets, {keep.shape[1]} records]; rerun `miakit attack`"
            )
        scores, members = scores[:, records], keep[:, records]
        metrics[name] = summarize(
            scores, members, design.targets, config.evaluate.fprs, seed=config.seed
        )
        plot_roc(run.plots / f"roc_{name}.png", name, scores, members, design.targets)
    skipped: dict[str, str] = {}
    if config.evaluate.ood and run.run_yaml.is_file():
        ood, skipped = ood_study(load_plan(run), run, config, list(metrics), jobs.query_all)
        for name, figures in ood.items():
            metrics[name] |= {key: aggregate(values) for key, values in figures.items()}
    save_json(run.metrics_json, {"attacks": metrics, "ood_skipped": skipped})
    write_atomic(
        run.metrics_csv, lambda tmp: pd.DataFrame(long_rows(metrics)).to_csv(tmp, index=False)
    )
    all_scores = {name: load_npy(run.scores(name)) for name in metrics}
    write_evaluation_tables(run, all_scores, config.evaluate.fprs)
    return metrics


def report(run: RunDir, single_point: Sequence[Path] = ()) -> Path:
    """report.html: one self-contained page (figures embedded), with the most exposed records
    shown as images when the pool is images, and the with/without experiments in `single_point`
    (output folders of `miakit single-point`)."""
    images = None
    if run.run_yaml.is_file():
        pool = load_configured_pool(read_run_config(run.run_yaml))
        if pool.is_image:
            evaluated = load_npy(run.eval_records) if run.eval_records.is_file() else slice(None)
            images = pool.x[evaluated]  # the report sees the evaluated records only
    return write_report(run.root, images=images, single_point=single_point)


def compare(runs: Sequence[RunDir], out: Path) -> Path:
    """compare.html and compare.parquet/.csv over several evaluated runs."""
    return compare_runs([r.root for r in runs], out)


def audit(config: AuditConfig, run: RunDir) -> dict:
    """plan → train → query → attack → evaluate → report; returns the metrics."""
    planned = plan(config, run)
    train(planned, run)
    query(planned, run)
    attack(run, config)
    metrics = evaluate(run, config)
    if config.dp_audit.canaries.count:
        audit_dp(run, config)
    report(run)
    return metrics
