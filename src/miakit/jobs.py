"""The work on one model: train it, or query it. Safe to run from several workers at once.

Each model owns its folder. A worker takes the model's lock first and re-checks whether the model
is still to do, so two workers never write the same model, and a model finished meanwhile by
another worker is not trained twice. Stale outputs are deleted before training starts and
meta.json is written last, so a crash can never leave a model that looks finished.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from miakit.models import build_model
from miakit.plan import Plan, load_plan, model_done
from miakit.query import query_logits
from miakit.seeding import derive_seed
from miakit.store import RunDir, model_lock, save_json, save_npy, write_atomic
from miakit.train.trainer import accuracy, resolve_device, train_model


def new_model(plan: Plan) -> torch.nn.Module:
    options = plan.config.model.model_dump(exclude={"arch"})
    return build_model(
        plan.config.model.arch, plan.pool.x.shape[1:], plan.pool.num_classes, **options
    )


def train_models(plan: Plan, run: RunDir, models: Sequence[int]) -> list[int]:
    """Train those of `models` that are not current and not locked by another worker."""
    cfg, device = plan.config, resolve_device(plan.config.train.device)
    x = torch.from_numpy(plan.pool.x).to(device)
    y = torch.from_numpy(plan.pool.y).to(device)
    trained = []
    for m in models:
        with model_lock(run, m) as mine:
            if not mine or model_done(run, m, "train_hash", plan.train_hash(m)):
                continue
            run.meta(m).unlink(missing_ok=True)
            run.logits(m).unlink(missing_ok=True)
            seeds = {purpose: derive_seed(cfg.seed, purpose, m) for purpose in ("init", "order")}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seeds["init"])
                model = new_model(plan).to(device)
            rows = torch.from_numpy(np.flatnonzero(plan.keep[m])).to(device)
            report = train_model(model, x[rows], y[rows], cfg.train, seeds["order"])
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            write_atomic(run.weights(m), lambda tmp, s=state: save_file(s, str(tmp)))
            save_json(
                run.meta(m),
                {
                    "model_index": m,
                    "train_hash": plan.train_hash(m),
                    "seeds": seeds,
                    "train_seconds": report.seconds,
                    "steps": report.steps,
                    "final_batch_loss": report.final_loss,
                    "finished_at": time.time(),
                    "worker": {"host": socket.gethostname(), "pid": os.getpid()},
                },
            )
            trained.append(m)
    return trained


def query_models(plan: Plan, run: RunDir, models: Sequence[int]) -> list[int]:
    """Write logits.npy for those of `models` whose logits are missing or stale."""
    device = resolve_device(plan.config.train.device)
    x = torch.from_numpy(plan.pool.x).to(device)
    queried = []
    for m in models:
        with model_lock(run, m) as mine:
            if not mine or (
                model_done(run, m, "query_hash", plan.query_hash(m)) and run.logits(m).is_file()
            ):
                continue
            model = new_model(plan).to(device)
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
            queried.append(m)
    return queried


@lru_cache(maxsize=2)
def _worker_plan(run_root: str, run_yaml_mtime: float) -> Plan:
    """A worker loads the plan (and its pool) once per run, not once per task."""
    return load_plan(RunDir(run_root))


def _plan_in_worker(run_root: str) -> tuple[Plan, RunDir]:
    run = RunDir(run_root)
    return _worker_plan(run_root, run.run_yaml.stat().st_mtime), run


def train_task(run_root: str, models: list[int]) -> list[int]:
    """Picklable entry point for worker processes and Ray tasks."""
    return train_models(*_plan_in_worker(run_root), models)


def query_task(run_root: str, models: list[int]) -> list[int]:
    return query_models(*_plan_in_worker(run_root), models)
