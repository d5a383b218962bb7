"""The audit's stages as functions over a run directory; the CLI and the Python API both call these.

plan → train → query → attack → evaluate. Each stage is idempotent: train and query skip models
whose meta.json records the current content hash, and redo the rest; attack and evaluate are cheap
next to training and always recompute, so they never serve stale results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file

from miakit.attacks import make_attack
from miakit.config import AuditConfig, dump_config, read_run_config
from miakit.data import Pool, balanced_keep, load_pool
from miakit.errors import MiakitError
from miakit.evaluate.metrics import long_rows, summarize
from miakit.models import build_model
from miakit.query import query_logits
from miakit.report.plots import plot_roc
from miakit.seeding import derive_seed, rng
from miakit.signals import Signals
from miakit.store import (
    RunDir,
    array_hash,
    content_hash,
    load_npy,
    save_json,
    save_npy,
    save_text,
    write_atomic,
)
from miakit.train.trainer import accuracy, resolve_device, train_model


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


@dataclass(frozen=True)
class Plan:
    config: AuditConfig
    pool: Pool
    keep: np.ndarray
    fingerprint: str

    def train_hash(self, m: int) -> str:
        return train_hash(self.config, self.fingerprint, self.keep[m], m)

    def query_hash(self, m: int) -> str:
        return query_hash(self.config, self.fingerprint, self.keep[m], m)


def plan(config: AuditConfig, run: RunDir) -> Plan:
    """Load the pool, draw the keep matrix and write run.yaml, keep.npy, labels.npy, pool.json."""
    pool = load_pool(config.data.name, config.data.data_dir)
    keep = balanced_keep(config.split.num_models, pool.num_records, rng(config.seed, "keep"))
    targets = config.evaluate.targets or config.split.num_models
    if targets > config.split.num_models:
        raise MiakitError(
            f"evaluate.targets: {targets} targets asked for but split.num_models is "
            f"{config.split.num_models}"
        )
    save_text(run.run_yaml, dump_config(config))
    save_npy(run.keep, keep)
    save_npy(run.labels, pool.y)
    fingerprint = pool.fingerprint()
    save_json(
        run.pool,
        {
            "name": pool.name,
            "fingerprint": fingerprint,
            "num_records": pool.num_records,
            "num_classes": pool.num_classes,
            "input_shape": list(pool.x.shape[1:]),
            "targets": list(range(targets)),
        },
    )
    return Plan(config, pool, keep, fingerprint)


def load_plan(run: RunDir) -> Plan:
    """Reopen a planned run; the data must still be the data it was planned on."""
    if not run.run_yaml.is_file():
        raise MiakitError(f"{run.root} has no run.yaml: plan it first with `miakit audit --out`")
    config = read_run_config(run.run_yaml)
    pool = load_pool(config.data.name, config.data.data_dir)
    fingerprint = _recorded_fingerprint(run)
    if fingerprint != pool.fingerprint():
        raise MiakitError(
            f"the data set {pool.name!r} differs from the one {run.root} was planned on; "
            "plan the run again with `miakit audit`"
        )
    return Plan(config, pool, load_npy(run.keep), fingerprint)


def _recorded_fingerprint(run: RunDir) -> str:
    try:
        return json.loads(run.pool.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError) as exc:
        raise MiakitError(f"{run.pool} is missing or unreadable; plan the run again") from exc


def train_hash(config: AuditConfig, fingerprint: str, keep_row: np.ndarray, m: int) -> str:
    """Everything that determines model m's weights: anything else changed means retrain."""
    return content_hash(
        {
            **config.training_inputs(),
            "pool": fingerprint,
            "keep_row": array_hash(keep_row),
            "model_index": m,
        }
    )


def query_hash(config: AuditConfig, fingerprint: str, keep_row: np.ndarray, m: int) -> str:
    train = train_hash(config, fingerprint, keep_row, m)
    return content_hash({"train": train, **config.query.model_dump(mode="json")})


def outdated_models(run: RunDir) -> list[int]:
    """Models of a planned run whose logits are missing or do not match the current plan."""
    config, fingerprint = read_run_config(run.run_yaml), _recorded_fingerprint(run)
    keep = load_npy(run.keep)
    return [
        m
        for m in range(len(keep))
        if not (
            _model_done(run, m, "query_hash", query_hash(config, fingerprint, keep[m], m))
            and run.logits(m).is_file()
        )
    ]


def _new_model(plan: Plan) -> torch.nn.Module:
    options = plan.config.model.model_dump(exclude={"arch"})
    return build_model(
        plan.config.model.arch, plan.pool.x.shape[1:], plan.pool.num_classes, **options
    )


def _model_done(run: RunDir, m: int, key: str, expected: str) -> bool:
    meta = run.read_meta(m)
    return meta is not None and meta.get(key) == expected


def train(plan: Plan, run: RunDir) -> list[int]:
    """Train every model whose meta.json does not match its current training inputs."""
    cfg, device = plan.config, resolve_device(plan.config.train.device)
    todo = [
        m
        for m in range(len(plan.keep))
        if not _model_done(run, m, "train_hash", plan.train_hash(m))
    ]
    x = torch.from_numpy(plan.pool.x).to(device)
    y = torch.from_numpy(plan.pool.y).to(device)
    with progress_bar() as bar:
        task = bar.add_task("training", total=len(todo))
        for m in todo:
            # stale outputs go first, so a crash can never leave them looking current
            run.meta(m).unlink(missing_ok=True)
            run.logits(m).unlink(missing_ok=True)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(cfg.seed, "init", m))
                model = _new_model(plan).to(device)
            rows = torch.from_numpy(np.flatnonzero(plan.keep[m])).to(device)
            report = train_model(
                model, x[rows], y[rows], cfg.train, derive_seed(cfg.seed, "order", m)
            )
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            write_atomic(run.weights(m), lambda tmp, s=state: save_file(s, str(tmp)))
            save_json(
                run.meta(m),
                {
                    "model_index": m,
                    "train_hash": plan.train_hash(m),
                    "seeds": {
                        "init": derive_seed(cfg.seed, "init", m),
                        "order": derive_seed(cfg.seed, "order", m),
                    },
                    "train_seconds": report.seconds,
                    "steps": report.steps,
                    "final_batch_loss": report.final_loss,
                    "finished_at": time.time(),
                },
            )
            bar.advance(task)
    return todo


def query(plan: Plan, run: RunDir) -> list[int]:
    """Write logits.npy for every trained model whose logits are missing or stale."""
    device = resolve_device(plan.config.train.device)
    x = torch.from_numpy(plan.pool.x).to(device)
    todo = []
    for m in range(len(plan.keep)):
        if not _model_done(run, m, "train_hash", plan.train_hash(m)):
            raise MiakitError(f"model {m} of {run.root} is not trained; run `miakit train` first")
        if not (_model_done(run, m, "query_hash", plan.query_hash(m)) and run.logits(m).is_file()):
            todo.append(m)
    with progress_bar() as bar:
        task = bar.add_task("querying", total=len(todo))
        for m in todo:
            model = _new_model(plan).to(device)
            model.load_state_dict(load_file(str(run.weights(m)), device=str(device)))
            logits = query_logits(model, x)
            save_npy(run.logits(m), logits)
            keep_row, labels = plan.keep[m], plan.pool.y
            meta = run.read_meta(m) or {}
            meta.update(
                {
                    "query_hash": plan.query_hash(m),
                    "accuracy_in": accuracy(logits[keep_row, 0], labels[keep_row]),
                    "accuracy_out": accuracy(logits[~keep_row, 0], labels[~keep_row]),
                }
            )
            save_json(run.meta(m), meta)
            bar.advance(task)
    return todo


def run_config(run: RunDir) -> AuditConfig:
    """The run's config, or the defaults for a run of brought-in models (no run.yaml)."""
    return read_run_config(run.run_yaml) if run.run_yaml.is_file() else AuditConfig()


def _targets(config: AuditConfig, num_models: int) -> list[int]:
    count = config.evaluate.targets or num_models
    if count > num_models:
        raise MiakitError(f"evaluate.targets is {count} but the run has {num_models} models")
    return list(range(count))


def attack(run: RunDir, config: AuditConfig, attacks: Sequence[str] | None = None) -> list[str]:
    """Score every target with each attack (leave-one-out); writes scores/<attack>.npy [T, N]."""
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
    targets = _targets(config, signals.num_models)
    with progress_bar() as bar:
        task = bar.add_task("attacking", total=len(names))
        for name, instance in instances.items():
            save_npy(run.scores(name), instance.score_leave_one_out(signals, targets))
            bar.advance(task)
    return names


def evaluate(run: RunDir, config: AuditConfig, attacks: Sequence[str] | None = None) -> dict:
    """metrics.json, metrics.csv and a log-log ROC plot per attack, from the stored scores."""
    keep = load_npy(run.keep)
    metrics = {}
    for name in attacks or config.attacks:
        if not run.scores(name).is_file():
            raise MiakitError(f"no scores for {name!r} in {run.root}; run `miakit attack` first")
        scores = load_npy(run.scores(name))
        targets = list(range(scores.shape[0]))
        if scores.shape[1] != keep.shape[1] or len(targets) > keep.shape[0]:
            raise MiakitError(
                f"{run.scores(name)} has shape {scores.shape}, expected [T <= {keep.shape[0]}, "
                f"{keep.shape[1]}]; rerun `miakit attack`"
            )
        metrics[name] = summarize(scores, keep, targets, config.evaluate.fprs)
        plot_roc(run.plots / f"roc_{name}.png", name, scores, keep, targets)
    save_json(run.metrics_json, {"attacks": metrics})
    write_atomic(
        run.metrics_csv, lambda tmp: pd.DataFrame(long_rows(metrics)).to_csv(tmp, index=False)
    )
    return metrics


def audit(config: AuditConfig, run: RunDir) -> dict:
    planned = plan(config, run)
    train(planned, run)
    query(planned, run)
    attack(run, config)
    return evaluate(run, config)
