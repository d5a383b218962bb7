"""The audit's stages as functions over a run directory; the CLI and the Python API both call these.

plan → train → query → attack → evaluate → report. Each stage is idempotent and redoes exactly
what is stale: train and query the models whose meta.json does not record the current content
hash; attack, evaluate and report the files whose record of their inputs (chain.py) does not
match the inputs as they are now. Run on its own, a stage refuses stale inputs and names the
command that makes them current. The model jobs of train and query run on an executor
(`model_jobs`); with defences.transfer, a step before them builds the run's shared features.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import ValidationError
from rich.progress import Progress

from miakit import tokens
from miakit.architectures import allowing_code, check_code_allowed
from miakit.attacks import Attack, make_attack
from miakit.chain import (
    audit_json_path,
    metrics_inputs,
    metrics_stale,
    output_record,
    read_record,
    report_inputs,
    report_record_path,
    report_stale,
    scores_inputs,
    scores_record_path,
    scores_skipped,
    scores_stale,
    skipped_record,
)
from miakit.config import (
    AuditConfig,
    ExecutionConfig,
    SinglePointConfig,
    format_validation_error,
    load_config,
    read_run_config,
)
from miakit.data import Pool, resolve_data_dir
from miakit.data.catalog import fetch as fetch_dataset
from miakit.data.catalog import list_datasets
from miakit.errors import AttackUnavailable, MiakitError, StaleInputs
from miakit.evaluate.intervals import INTERVAL_NOTE
from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.metrics import (
    aggregate,
    figure_words,
    long_rows,
    mark_unmeasurable,
    small_m_warning,
    summarize,
    unmeasurable,
)
from miakit.evaluate.tables import TABLES_DIR, write_evaluation_tables
from miakit.executors import Executor, LocalExecutor, ProcessExecutor, TaskFailure
from miakit.ood_study import ood_study
from miakit.plan import (
    Hashes,
    Plan,
    check_labels,
    configured_canaries,
    evaluation_design,
    load_configured_pool,
    load_plan,
    outdated_models,
    queried,
    trained,
)
from miakit.plan import plan as plan_run
from miakit.privacy_audit import (
    audit_dp,
    check_audit_current,
    exposure_method,
    remove_exposure_tables,
)
from miakit.progress import ProgressLines, progress, tracked
from miakit.signals import Signals, TokenSignals
from miakit.store import (
    RunDir,
    clear_leftovers,
    describe_holder,
    document_record,
    load_npy,
    lock_holder,
    save_json,
    save_npy,
    write_atomic,
)
from miakit.validate import is_language_model, resolve_attacks

if TYPE_CHECKING:
    from miakit.report.compare import Comparison
    from miakit.report.verdict import Verdict

# Modules that import torch, opacus or matplotlib are imported in the stages that use them, so
# that commands which train nothing (status, attack, report, --help) start in a fraction of the
# time (tests/test_cli_imports.py holds this).

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


#: Seconds between looks at a lock another process holds, while waiting for it.
LOCK_POLL_SECONDS = 1.0

__all__ = [
    "AuditConfig",
    "MetricKey",
    "RunDir",
    "SinglePointConfig",
    "allowing_code",
    "attack",
    "audit",
    "audit_dp",
    "compare",
    "evaluate",
    "exposure_method",
    "fetch_dataset",
    "figure_words",
    "list_datasets",
    "list_models",
    "load_config",
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

    if not models:
        return []  # nothing to do: no executor, no empty progress bar
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


def with_execution(plan: Plan, executor: str | None, workers: int | None) -> Plan:
    """The plan with other execution settings (the command line's `--executor`, `--workers`;
    None keeps run.yaml's): they change no model, so they may differ from run.yaml's."""
    settings = plan.config.execution.model_dump()
    given = {"executor": executor, "workers": workers}
    settings.update({k: v for k, v in given.items() if v is not None})
    try:
        execution = ExecutionConfig.model_validate(settings)
    except ValidationError as exc:
        raise MiakitError(format_validation_error(exc)) from exc
    return replace(plan, config=plan.config.model_copy(update={"execution": execution}))


@contextmanager
def _code_opt_in(config: AuditConfig) -> Iterator[None]:
    """Run a stage with the config's execution.allow_code in force (for its worker processes
    too); a config naming code without an opt-in stops here, before any work."""
    with allowing_code(config.execution.allow_code):
        check_code_allowed(config.model.arch)
        yield


def plan(config: AuditConfig, run: RunDir, log: Log | None = _stderr) -> Plan:
    """Check the whole audit and write the run's plan (plan.plan); `log` hears what a changed
    config redoes. A config naming code (model.arch python:...) needs the opt-in
    (`miakit.architectures.check_code_allowed`)."""
    with _code_opt_in(config):
        return plan_run(config, run, log)


def _held(run: RunDir, models: Sequence[int]) -> dict[int, dict]:
    """Of `models`, those whose lock another live (or unverifiable, foreign) process holds."""
    holders = {m: lock_holder(run.lock(m)) for m in models}
    return {m: h for m, h in holders.items() if h is not None and h["state"] != "dead"}


def _held_message(stage: str, held: dict[int, dict]) -> str:
    first, holder = next(iter(held.items()))
    models = list(held)
    return (
        f"{len(models)} models (e.g. model {first}) are being {stage} by another process "
        f"({describe_holder(holder)})"
    )


def _no_progress(rest: list[int], before: list[int], stage: str) -> None:
    """Stop a stage that would go round again with the same models left and nobody holding them."""
    if rest == before:
        raise MiakitError(
            f"models {rest[:10]} are still not {stage} after a second attempt; see the errors "
            "above, or `miakit status` for their state"
        )


def _wait(run: RunDir, held: dict[int, dict], stage: str, log: Log | None) -> None:
    """Wait until no live process holds the locks of `held`."""
    if log is not None:
        log(_held_message(stage, held) + "; waiting for it")
    while _held(run, list(held)):
        time.sleep(LOCK_POLL_SECONDS)


def _build_features(plan: Plan, run: RunDir) -> None:
    """The step before a stage's model jobs: with defences.transfer, build the run's shared
    features (the extractor, pretrained or loaded, and its outputs) unless they are current, so
    a bad setting is one error, not one a task, and no job pretrains anything."""
    if plan.config.defences.transfer.enabled:
        from miakit.defences.transfer import shared_features

        shared_features(plan, run)


def train(
    plan: Plan,
    run: RunDir,
    shard: tuple[int, int] | None = None,
    wait: bool = False,
    log: Log | None = _stderr,
) -> list[int]:
    """Train every model (of the shard) that is not current: its meta.json does not match its
    training inputs, or its weights are not the file meta.json records. Models another process
    holds are waited for (`wait`) or named in `log` and left to it. A config naming code needs
    the opt-in, given again for a run planned with it."""
    with _code_opt_in(plan.config):
        return _train(plan, run, shard, wait, log)


def _train(
    plan: Plan, run: RunDir, shard: tuple[int, int] | None, wait: bool, log: Log | None
) -> list[int]:
    from miakit import model_jobs

    done: list[int] = []
    before: list[int] = []
    while True:
        todo = [m for m in shard_models(len(plan.keep), shard) if not trained(run, plan, m)]
        if todo:
            _build_features(plan, run)
        result = _run_model_jobs(
            plan, run, "training", todo, model_jobs.train_models, model_jobs.train_task
        )
        done.extend(result)
        rest = [m for m in todo if m not in result and not trained(run, plan, m)]
        held = _held(run, rest)
        if not held:
            if not rest:
                return done
            _no_progress(rest, before, "trained")
            before = rest
            continue  # their holders ended meanwhile: take them
        if not wait:
            if log is not None:
                log(_held_message("trained", held) + "; not trained here")
            return done
        _wait(run, held, "trained", log)


def query(
    plan: Plan,
    run: RunDir,
    shard: tuple[int, int] | None = None,
    wait: bool = False,
    log: Log | None = _stderr,
) -> list[int]:
    """Write logits.npy for every trained model (of the shard) whose logits are missing or stale.
    A model that is not trained is an error, or, while another process holds it, waited for
    (`wait`) or an error naming that process. A config naming code needs the opt-in."""
    with _code_opt_in(plan.config):
        return _query(plan, run, shard, wait, log)


def _query(
    plan: Plan, run: RunDir, shard: tuple[int, int] | None, wait: bool, log: Log | None
) -> list[int]:
    from miakit import model_jobs

    done: list[int] = []
    before: list[int] = []
    while True:
        models = shard_models(len(plan.keep), shard)
        untrained = [m for m in models if not trained(run, plan, m)]
        held = _held(run, untrained)
        if held and wait:
            _wait(run, held, "trained", log)
            continue
        if held:
            raise MiakitError(
                _held_message("trained", held) + f"; wait for it (`miakit status {run.root}`)"
            )
        if untrained:
            raise StaleInputs(
                f"model {untrained[0]} of {run.root} is not trained (or its weights do not match "
                f"meta.json); run `miakit train {run.root}` first"
            )
        todo = [m for m in models if not queried(run, plan, m)]
        if todo:
            _build_features(plan, run)
        result = _run_model_jobs(
            plan, run, "querying", todo, model_jobs.query_models, model_jobs.query_task
        )
        done.extend(result)
        rest = [m for m in todo if m not in result and not queried(run, plan, m)]
        held = _held(run, rest)
        if not rest:
            return done
        if held and not wait:
            if log is not None:
                log(_held_message("queried", held) + "; not queried here")
            return done
        if held:
            _wait(run, held, "queried", log)
        else:
            _no_progress(rest, before, "queried")
            before = rest


def status(run: RunDir) -> dict[str, list[int]]:
    """Models of a planned run by state: done; running (locked by a live process here); running
    elsewhere (locked from another host); dead lock (its holder is gone: the next run takes it
    over); stale; missing."""
    hashes = Hashes(run)
    states: dict[str, list[int]] = {
        "done": [],
        "running": [],
        "running elsewhere": [],
        "dead lock": [],
        "stale": [],
        "missing": [],
    }
    for m in range(len(hashes.keep)):
        holder = lock_holder(run.lock(m))
        if holder is None and trained(run, hashes, m) and queried(run, hashes, m):
            states["done"].append(m)
        elif holder is not None:
            state = {"live": "running", "foreign": "running elsewhere"}.get(holder["state"])
            states[state or "dead lock"].append(m)
        elif run.meta(m).is_file():
            states["stale"].append(m)
        else:
            states["missing"].append(m)
    return states


def trained_models(run: RunDir) -> tuple[int, int]:
    """(models trained and current, models planned) of a planned run: what an interrupted
    `miakit audit` or `miakit train` has saved."""
    hashes = Hashes(run)
    done = sum(trained(run, hashes, m) for m in range(len(hashes.keep)))
    return done, len(hashes.keep)


def saved_models(run: RunDir) -> str:
    """What an interrupted audit has saved, in words: "3 of 8 models are trained and saved."."""
    try:
        done, total = trained_models(run)
    except MiakitError:  # interrupted before the plan was written
        return "nothing is planned yet."
    return f"{done} of {total} models are trained and saved."


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


def _check_models(run: RunDir) -> None:
    """A planned run's models all have current logits and its labels are the planned ones."""
    if not run.run_yaml.is_file():
        return  # brought-in models: their files are all there is
    outdated = outdated_models(run)
    if outdated:
        raise StaleInputs(
            f"{len(outdated)} models of {run.root} (e.g. model {outdated[0]}) have missing "
            f"or stale logits; finish the run with `miakit audit --out {run.root}` (its config), "
            f"or `miakit train {run.root}` and `miakit query {run.root}`"
        )
    check_labels(run)


def score_signals(
    instance: Attack,
    signals: Signals,
    targets: Sequence[int],
    references: Sequence[int] | None,
    records: np.ndarray | None = None,
) -> np.ndarray:
    """Scores [T, N] of `targets` by one attack (`Attack.score_targets`): what the attack stage
    writes and `miakit.score` returns. An attack that cannot run on these signals
    (`Attack.unavailable`) raises AttackUnavailable with the reason."""
    reason = instance.unavailable(signals)
    if reason is not None:
        raise AttackUnavailable(reason)
    return instance.score_targets(signals, targets, references, records)


def attack(run: RunDir, config: AuditConfig, attacks: Sequence[str] | None = None) -> list[str]:
    """Score every target with each attack whose scores are stale; writes scores/<attack>.npy
    [T, N] (row i: target i of the design) and its record scores/<attack>.json. References are
    every other model (leave-one-out) unless the split names them. Attacks see the logits as
    `query.output` restricts them; one that cannot run on them (`Attack.unavailable`, e.g.
    LiRA on labels alone) writes no scores, and its record says why. Returns the attacks scored
    or skipped now (the others were current)."""
    names = resolve_attacks(attacks or config.attacks)
    _check_models(run)
    clear_leftovers(run.scores_dir)
    instances = {n: make_attack(n, config.attack_options.get(n)) for n in names}
    keep = load_npy(run.keep, mmap=True)
    design = evaluation_design(run, config, len(keep))
    stale = [n for n in names if scores_stale(run, config, n, design) is not None]
    if not stale:
        return []
    features = None
    if run.run_yaml.is_file() and any(instances[n].needs_features for n in stale):
        features = load_plan(run).pool.x
    signals = Signals.from_run(run, config.query.output, features)
    if run.run_yaml.is_file() and any(instances[n].needs_tokens for n in stale):
        pool = load_plan(run).pool
        if pool.is_text:
            compressed = text_zlib_bytes(pool)
            token_signals = TokenSignals.from_run(run, len(keep), compressed)
            if any(instances[n].needs_reference_lm for n in stale):
                from miakit.reference_lm import reference_logprobs

                reference = reference_logprobs(run, load_plan(run))
                token_signals = replace(token_signals, reference_logprobs=reference)
            signals = replace(signals, tokens=token_signals)
    with progress_bar() as bar:
        task = bar.add_task("attacking", total=len(stale))
        for name in stale:
            record = read_record(scores_record_path(run, name))
            inputs, files = scores_inputs(run, config, name, design, record)
            try:
                scores = score_signals(
                    instances[name], signals, design.targets, design.references, design.eval_records
                )
            except AttackUnavailable as exc:
                run.scores(name).unlink(missing_ok=True)
                save_json(scores_record_path(run, name), skipped_record(inputs, files, str(exc)))
                bar.advance(task)
                continue
            save_npy(run.scores(name), scores)
            save_json(scores_record_path(run, name), output_record(inputs, files, run.scores(name)))
            bar.advance(task)
    return stale


def _check_scores(run: RunDir, config: AuditConfig, names: Sequence[str], design) -> None:
    """Every attack's scores exist and are current (else: the command that makes them so)."""
    _check_models(run)
    for name in names:
        reason = scores_stale(run, config, name, design)
        if reason == "there are none":
            raise StaleInputs(
                f"no scores for {name!r} in {run.root}; run `miakit attack {run.root} "
                f"--attacks {name}` first"
            )
        if reason is not None:
            raise StaleInputs(
                f"{run.scores(name)} is stale ({reason}); run "
                f"`miakit attack {run.root} --attacks {name}` to make it current"
            )


def current_scores(run: RunDir, attack: str) -> np.ndarray:
    """An attack's scores [T, N] (scores/<attack>.npy, row i: target i of the design), once they
    are checked current (else the error naming `miakit attack`); an attack skipped on the run's
    signals is an error giving the reason."""
    (name,) = resolve_attacks([attack])
    config = run_config(run)
    _check_scores(run, config, [name], evaluation_design(run, config, len(load_npy(run.keep))))
    if not run.scores(name).is_file():
        reason = scores_skipped(run, name)
        raise MiakitError(f"{name} has no scores in {run.root}: it was skipped ({reason})")
    return load_npy(run.scores(name))


def evaluate(run: RunDir, config: AuditConfig, attacks: Sequence[str] | None = None) -> dict:
    """metrics.json, metrics.csv, tables and a log-log ROC plot per attack, from the stored
    scores (restricted to the split's evaluation records, where it has them); attacks skipped
    on these signals are listed under metrics.json's `skipped` with why. Stale or missing
    scores are an error naming `miakit attack`; when metrics.json is current for these attacks
    and settings, nothing is written and its metrics are returned."""
    from miakit.report.plots import plot_roc

    names = resolve_attacks(attacks or config.attacks)
    keep = load_npy(run.keep)
    design = evaluation_design(run, config, len(keep))
    _check_scores(run, config, names, design)
    ood_folders = [run.root / "ood" / spec.label for spec in config.evaluate.ood]
    clear_leftovers(run.root, run.plots, run.root / TABLES_DIR, *ood_folders)
    if metrics_stale(run, config, names, design) is None:
        return json.loads(run.metrics_json.read_text())["attacks"]
    inputs, files = metrics_inputs(run, config, names, design, read_record(run.metrics_json))
    records, left_out = _membership_records(config, design, keep.shape[1])
    skipped_attacks = inputs["skipped"]
    if len(skipped_attacks) == len(names):
        reasons = "; ".join(skipped_attacks.values())
        raise MiakitError(
            f"every attack was skipped on these signals, so there is nothing to evaluate "
            f"({reasons}); choose an attack that can run on them"
        )
    metrics = {}
    for name in tracked([n for n in names if n not in skipped_attacks], "evaluating"):
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
        from miakit import model_jobs

        ood, skipped = ood_study(load_plan(run), run, config, list(metrics), model_jobs.query_all)
        evaluated = keep[:, records]
        non_members = int(min((~evaluated[t]).sum() for t in design.targets))
        reasons = unmeasurable(config.evaluate.fprs, non_members)
        for name, figures in ood.items():
            ood_summary = {key: aggregate(values) for key, values in figures.items()}
            metrics[name] |= mark_unmeasurable(ood_summary, reasons)
    warnings = {
        name: text
        for name in metrics
        if (
            text := small_m_warning(
                name,
                len(keep),
                design.references is None,
                make_attack(name, config.attack_options.get(name)).reference_counts,
            )
        )
    }
    write_atomic(
        run.metrics_csv, lambda tmp: pd.DataFrame(long_rows(metrics)).to_csv(tmp, index=False)
    )
    all_scores = {name: load_npy(run.scores(name)) for name in metrics}
    text = is_language_model(config)
    tables = write_evaluation_tables(
        run, all_scores, config.evaluate.fprs, records, calibration=not text
    )
    body = {
        "attacks": metrics,
        "skipped": skipped_attacks,
        "intervals": INTERVAL_NOTE,
        "warnings": warnings,
        "ood_skipped": skipped,
        "canaries_left_out": {"count": len(left_out), "records": left_out.tolist()},
    }
    plots = [run.plots / f"roc_{n}.png" for n in metrics]
    written = [run.metrics_csv, *plots, *tables, *(p.with_suffix(".csv") for p in tables)]
    record = output_record(inputs, files, run.metrics_csv) | document_record(
        body, run.root, written
    )
    save_json(run.metrics_json, body | record)  # metrics.json last: it marks done
    return metrics


def _membership_records(
    config: AuditConfig, design, num_records: int
) -> tuple[np.ndarray, np.ndarray]:
    """(int pool indices the membership metrics are computed on, int pool indices of the canaries
    left out): the split's evaluation records (all records without one), less the DP audit's
    canaries unless evaluate.include_canaries. Canaries are an auditing device with random keep
    bits, not the population the metrics and the verdict speak for."""
    evaluated = np.ones(num_records, dtype=bool)
    if design.eval_records is not None:
        evaluated = np.asarray(design.eval_records, dtype=bool).copy()
    left_out = np.zeros(0, dtype=np.int64)
    if not config.evaluate.include_canaries:
        canaries = configured_canaries(config, num_records)
        left_out = canaries[evaluated[canaries]]
        evaluated[left_out] = False
    return np.flatnonzero(evaluated), left_out


def check_metrics(run: RunDir) -> None:
    """metrics.json exists and is current (with the scores and models it rests on)."""
    record = read_record(run.metrics_json)
    if not run.metrics_json.is_file():
        raise StaleInputs(f"{run.root} has no metrics.json; run `miakit evaluate {run.root}` first")
    names = list((record or {}).get("inputs", {}).get("attacks", []))
    if record is None or not names:
        raise StaleInputs(
            f"{run.metrics_json} does not record what it was computed from; run "
            f"`miakit evaluate {run.root}` to make it current"
        )
    config = run_config(run)
    design = evaluation_design(run, config, len(load_npy(run.keep, mmap=True)))
    _check_scores(run, config, names, design)
    reason = metrics_stale(run, config, names, design)
    if reason is not None:
        raise StaleInputs(
            f"{run.metrics_json} is stale ({reason}); run `miakit evaluate {run.root} "
            f"--attacks {','.join(names)}` to make it current"
        )


def report(run: RunDir, single_point: Sequence[Path] = ()) -> Path:
    """report.html: one self-contained page (figures embedded), with the most exposed records
    shown as pictures where the records are pictures (else as feature rows), and the with/without experiments in `single_point`
    (output folders of `miakit single-point`). Stale metrics are an error naming `miakit
    evaluate`; a report that is current for its inputs is left as it is."""
    from miakit.report.html import write_report
    from miakit.report.runs import evaluated_records

    check_metrics(run)
    check_audit_current(run, run_config(run))
    clear_leftovers(run.root)
    own = run.root / "single_point"
    folders = list(
        dict.fromkeys(
            [*map(Path, single_point), *([own] if (own / "summary.json").is_file() else [])]
        )
    )
    path = run.root / "report.html"
    if report_stale(run, folders) is None:
        return path
    inputs, files = report_inputs(run, folders, read_record(report_record_path(run)))
    images = features = texts = None
    if run.run_yaml.is_file():
        pool = load_configured_pool(read_run_config(run.run_yaml))
        evaluated = evaluated_records(run, json.loads(run.metrics_json.read_text()), len(pool.y))
        evaluated = slice(None) if evaluated is None else evaluated
        pictures = pool.pictures()  # the report sees the evaluated records only
        if pictures is not None:
            images = pictures[evaluated]
        elif pool.is_text:
            texts = pool_texts(pool, evaluated)
        else:
            features = pool.x[evaluated]
    path = write_report(
        run.root, images=images, features=features, single_point=single_point, texts=texts
    )
    save_json(report_record_path(run), output_record(inputs, files, path))
    return path


def list_models(data: str | None = None) -> list[tuple[str, str, int | None]]:
    """Every form of model.arch (`miakit.architectures.list_models`), with parameter counts for
    the records of the registered data set `data` (its registered shape: nothing is loaded)."""
    from miakit.architectures import list_models as architectures
    from miakit.data.sources import SOURCES

    if data is None:
        return architectures()
    if data not in SOURCES:
        raise MiakitError(f"--data: unknown data set {data!r}; known: {', '.join(SOURCES)}")
    info = SOURCES[data]
    return architectures(info.shape, info.num_classes)


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


def audit(config: AuditConfig, run: RunDir, log: Log | None = _stderr) -> dict:
    """plan → train → query → attack → evaluate → report, each redoing only what is stale (a
    rerun of a finished audit writes nothing); models another process holds are waited for.
    Returns the metrics."""
    with _code_opt_in(config):
        return _audit(config, run, log)


def _audit(config: AuditConfig, run: RunDir, log: Log | None) -> dict:
    planned = plan(config, run, log)
    config = planned.config
    train(planned, run, wait=True, log=log)
    query(planned, run, wait=True, log=log)
    attack(run, config)
    metrics = evaluate(run, config)
    if config.dp_audit.canaries.count:
        audit_dp(run, config)
    elif audit_json_path(run).is_file():  # from an earlier config with canaries: stale now
        audit_json_path(run).unlink()
        remove_exposure_tables(run)
    report(run)
    return metrics


def text_zlib_bytes(pool: Pool) -> np.ndarray:
    """int64 [N]: each text record's zlib-compressed length (level 9) in bytes, of its UTF-8
    text where the pool keeps it (a model folder's tokenizer), else of its byte tokens."""
    if pool.texts is None:
        return tokens.zlib_bytes(pool.x)
    return np.array([len(zlib.compress(t.encode("utf-8"), 9)) for t in pool.texts], np.int64)


def pool_texts(pool: Pool, records: slice | np.ndarray) -> list[str]:
    """The text of the pool's records `records` (decoded from byte tokens unless kept)."""
    if pool.texts is not None:
        return list(np.asarray(pool.texts, dtype=object)[records])
    return [tokens.decode(row).decode("utf-8", "replace") for row in pool.x[records]]
