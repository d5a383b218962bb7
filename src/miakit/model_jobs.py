"""Model jobs: train a group of models, or query them. Safe to run from several workers at once.

The functions executors run (`train_task`, `query_task`, picklable by this module's path), and
what they call. A job sees the pool through the run's feature source (`miakit.features`: the
records as they are, or a frozen extractor's features), so the same code trains and queries
plain and transfer-learning models; estimators (model.arch sklearn) are fitted and queried on the
pool directly, and a target checkpoint (model.target_weights) is copied in.

Each model owns its folder. A worker takes the model's lock first and re-checks whether the model
is still to do, so two workers never write the same model, and a model finished meanwhile by
another worker is not trained twice. Stale outputs are deleted before training starts and
meta.json is written last, so a crash can never leave a model that looks finished.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Sequence
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from miakit import tokens
from miakit.architectures import is_sklearn
from miakit.data.canaries import secret_texts
from miakit.data.text import hf_tokens, load_prefix
from miakit.defences.dp import train_private
from miakit.defences.laplace import fit_laplace
from miakit.defences.temperature import temperature_scaled
from miakit.errors import MiakitError
from miakit.features import FeatureSource, feature_source
from miakit.models.sklearn_model import (
    estimator_logits,
    fit_estimator,
    load_estimator,
    new_estimator,
    save_estimator,
)
from miakit.plan import (
    CHECKPOINT_MODEL,
    Plan,
    has_secrets,
    hf_folder,
    load_plan,
    queried,
    scored_secrets,
    trained,
)
from miakit.query import identity_view, log_perplexity, query_logits, query_tokens
from miakit.seeding import derive_seed, rng
from miakit.store import (
    RunDir,
    file_stamp,
    model_lock,
    save_json,
    save_npy,
    stamped_hash,
    write_atomic,
)
from miakit.tokens import RECALL_STAT, SECRET_STAT, TOKEN_STATS, encode
from miakit.train.batched import train_batched
from miakit.train.lm import train_lm
from miakit.train.threads import threads_for, torch_threads
from miakit.train.trainer import TrainReport, accuracy, resolve_device, train_model


def _seeds(plan: Plan, m: int) -> dict[str, int]:
    return {p: derive_seed(plan.config.seed, p, m) for p in ("init", "order", "augment")}


def _initialized(plan: Plan, m: int, data: FeatureSource) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seeds(plan, m)["init"])
        return data.new_model(plan).to(data.device)


def train_models(plan: Plan, run: RunDir, models: Sequence[int]) -> list[int]:
    """Train those of `models` that are not current and not locked by another worker; with
    train.batched, those of them together as one stacked group. Estimators (arch sklearn) are
    fitted one by one; a target checkpoint (model.target_weights) is copied in, not trained."""
    with ExitStack() as locks:
        todo = [
            m
            for m in models
            if locks.enter_context(model_lock(run, m)) and not trained(run, plan, m)
        ]
        if not todo:
            return []
        for m in todo:  # stale outputs go first: a crash never leaves them looking current
            for path in (run.meta(m), run.logits(m), run.trace(m)):
                path.unlink(missing_ok=True)
            for name in (*TOKEN_STATS, RECALL_STAT, SECRET_STAT):
                run.token_stat(m, name).unlink(missing_ok=True)
        if is_sklearn(plan.config.model.arch):
            for m in todo:
                _train_estimator(plan, run, m)
            return todo
        if plan.config.model.target_weights is not None and CHECKPOINT_MODEL in todo:
            _install_checkpoint(plan, run)
            trains = [m for m in todo if m != CHECKPOINT_MODEL]
            return [CHECKPOINT_MODEL, *(_train_networks(plan, run, trains) if trains else [])]
        return _train_networks(plan, run, todo)


def _train_networks(plan: Plan, run: RunDir, todo: list[int]) -> list[int]:
    """Train the torch models `todo` (locked by the caller, stale outputs removed)."""
    cfg = plan.config.train
    with ExitStack() as locks:
        data = feature_source(plan, run)
        trace_on = (data.x, data.y) if cfg.record_trace else None
        nets = [_initialized(plan, m, data) for m in todo]
        rows = [torch.from_numpy(np.flatnonzero(plan.keep[m])).to(data.device) for m in todo]
        seeds = [_seeds(plan, m) for m in todo]
        locks.enter_context(torch_threads(threads_for(nets[0], plan.config.execution.threads)))
        spent: list[dict | None] = [None] * len(todo)
        if plan.config.defences.dp.enabled and any(plan.defended(m) for m in todo):
            reports = []
            for i, (m, net, r, sd) in enumerate(zip(todo, nets, rows, seeds, strict=True)):
                if not plan.defended(m):
                    reports.append(_train_plain(plan, data, net, r, sd, trace_on))
                    continue
                report, privacy = train_private(
                    net,
                    data.x[r],
                    data.y[r],
                    cfg,
                    plan.config.defences.dp,
                    sd["order"],
                    augment_seed=sd["augment"],
                    norm=data.norm,
                    trace_on=trace_on,
                    held_out=data.held_out,
                )
                reports.append(report)
                spent[i] = privacy.as_dict()
        elif plan.pool.is_text:
            reports = [
                train_lm(net, data.x[r], cfg, sd["order"], pad=_pad(plan))
                for net, r, sd in zip(nets, rows, seeds, strict=True)
            ]
        elif cfg.batched and len(todo) > 1:
            reports = train_batched(
                nets,
                data.x,
                data.y,
                rows,
                cfg,
                [s["order"] for s in seeds],
                [s["augment"] for s in seeds],
                norm=data.norm,
                trace_on=trace_on,
            )
        else:
            reports = [
                _train_plain(plan, data, net, r, sd, trace_on)
                for net, r, sd in zip(nets, rows, seeds, strict=True)
            ]
        transfer = data.describe(plan)
        for m, net, report, seed, privacy in zip(todo, nets, reports, seeds, spent, strict=True):
            _save_trained(plan, run, m, net, report, seed, privacy, transfer)
    return todo


def _save_meta(plan: Plan, run: RunDir, m: int, device: str, weights: Path, **details) -> None:
    """Model m's meta.json, written last: its train hash, device and weights' stamp, `details`
    (what this kind of model records), and when and where it finished."""
    save_json(
        run.meta(m),
        {
            "model_index": m,
            "train_hash": plan.train_hash(m, device),
            "device": device,
            "weights": file_stamp(weights),
            **details,
            "finished_at": time.time(),
            "worker": {"host": socket.gethostname(), "pid": os.getpid()},
        },
    )


def _train_estimator(plan: Plan, run: RunDir, m: int) -> None:
    """model.arch sklearn: fit model m's estimator on its keep row, save it (skops) and its
    meta.json (last). Estimators train on the CPU."""
    model, pool = plan.config.model, plan.pool
    seed = derive_seed(plan.config.seed, "init", m)
    estimator = new_estimator(model.estimator or "", model.params, model.standardize, seed)
    rows = np.flatnonzero(plan.keep[m])
    seconds = fit_estimator(
        estimator, pool.x[rows], pool.y[rows], plan.config.execution.threads or 1
    )
    save_estimator(run.estimator(m), estimator)
    test_accuracy = None
    if pool.x_test is not None and pool.y_test is not None:
        logits = estimator_logits(estimator, pool.x_test, pool.num_classes)
        test_accuracy = accuracy(logits[:, 0], pool.y_test)
    _save_meta(
        plan,
        run,
        m,
        "cpu",
        run.estimator(m),
        seeds={"init": seed},
        train_seconds=seconds,
        test_accuracy=test_accuracy,
    )


def _install_checkpoint(plan: Plan, run: RunDir) -> None:
    """model.target_weights: copy the target's checkpoint in as model 0's weights, with a
    meta.json whose train hash holds the checkpoint's SHA-256 (`plan.checkpoint_inputs`)."""
    source = Path(plan.config.model.target_weights or "")
    m = CHECKPOINT_MODEL
    write_atomic(run.weights(m), lambda tmp: shutil.copyfile(source, tmp))
    device = resolve_device(plan.config.train.device).type
    _save_meta(plan, run, m, device, run.weights(m), trained_elsewhere=str(source))


def _train_plain(plan: Plan, data: FeatureSource, net, rows, seeds: dict, trace_on) -> TrainReport:
    return train_model(
        net,
        data.x[rows],
        data.y[rows],
        plan.config.train,
        seeds["order"],
        augment_seed=seeds["augment"],
        norm=data.norm,
        trace_on=trace_on,
        held_out=data.held_out,
    )


def _save_trained(
    plan: Plan,
    run: RunDir,
    m: int,
    net: torch.nn.Module,
    report: TrainReport,
    seeds: dict,
    privacy: dict | None,
    transfer: dict | None,
) -> None:
    # cloned: tied weights (a language model's head and embedding) share memory, which
    # safetensors does not store
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    write_atomic(run.weights(m), lambda tmp: save_file(state, str(tmp)))
    if report.trace is not None:
        save_npy(run.trace(m), report.trace)
    _save_meta(
        plan,
        run,
        m,
        resolve_device(plan.config.train.device).type,
        run.weights(m),
        seeds=seeds,
        train_seconds=report.seconds,
        trace_seconds=report.trace_seconds,
        trace_epochs=report.trace_epochs,
        epochs=report.epochs,
        steps=report.steps,
        final_batch_loss=report.final_loss,
        test_accuracy=report.held_out_accuracy,
        dp=privacy,
        transfer=transfer,
    )


def query_models(plan: Plan, run: RunDir, models: Sequence[int]) -> list[int]:
    """Write logits.npy for those of `models` whose logits are missing or stale."""
    data: FeatureSource | None = None
    done = []
    for m in models:
        with model_lock(run, m) as mine:
            if not mine or queried(run, plan, m):
                continue
            if is_sklearn(plan.config.model.arch):
                estimator = _fitted_estimator(plan, run, m)
                logits = estimator_logits(estimator, plan.pool.x, plan.pool.num_classes)
                _save_logits(plan, run, m, logits, None)
                done.append(m)
                continue
            data = data or feature_source(plan, run)
            model, calibration = _queryable(plan, run, data, m)
            if plan.pool.is_text:
                prefix = _recall_prefix(plan, data.device)
                with torch_threads(threads_for(model, plan.config.execution.threads)):
                    logits, stats = query_tokens(
                        model,
                        data.x,
                        prefix=prefix,
                        pad=_pad(plan),
                        lower=_lower(plan, data.device),
                    )
                    if has_secrets(plan.config):
                        stats[SECRET_STAT] = log_perplexity(
                            model, _alternatives(plan, data.device), pad=_pad(plan)
                        )
                _save_tokens(plan, run, m, logits, stats)
                done.append(m)
                continue
            with torch_threads(threads_for(model, plan.config.execution.threads)):
                logits = data.query(model, plan.config.query)
            _save_logits(plan, run, m, logits, calibration)
            done.append(m)
    return done


def _pad(plan: Plan) -> int:
    """The padding id of the pool's token ids (miakit's byte tokenizer's PAD unless the pool's
    tokenizer is a model folder's)."""
    return plan.pool.pad_id if plan.pool.pad_id is not None else tokens.PAD


def _lower(plan: Plan, device: torch.device) -> torch.Tensor | None:
    """The lowercased records' token ids where the pool has them (`Pool.x_lower`)."""
    lower = plan.pool.x_lower
    return None if lower is None else torch.from_numpy(lower).to(device)


def _save_logits(
    plan: Plan, run: RunDir, m: int, logits: np.ndarray, calibration: dict | None
) -> None:
    """Write model m's logits [N, A, C], then its meta.json with their stamp and query hash."""
    identity = identity_view(plan.config.query.augmentations)
    save_npy(run.logits(m), logits)
    keep_row, labels = plan.keep[m], plan.pool.y
    meta = run.read_meta(m) or {}
    meta.update(
        {
            "query_hash": plan.query_hash(m, meta.get("device", "cuda")),
            "logits": file_stamp(run.logits(m)),
            "accuracy_in": accuracy(logits[keep_row, identity], labels[keep_row]),
            "accuracy_out": accuracy(logits[~keep_row, identity], labels[~keep_row]),
            "calibration": calibration,
        }
    )
    save_json(run.meta(m), meta)


def _recall_prefix(plan: Plan, device: torch.device) -> torch.Tensor | None:
    """The ReCaLL prefix's token ids [K] (query.recall_prefix), or None without one."""
    query = plan.config.query
    if query.recall_prefix is None:
        return None
    _, prefix = load_prefix(query.recall_prefix, query.recall_shots, hf_folder(plan.config))
    return torch.from_numpy(prefix).to(device)


def _alternatives(plan: Plan, device: torch.device) -> torch.Tensor:
    """Token ids [k, L] of the texts of the secret canaries' randomness space R each model
    scores: every one, or the canaries' and the sampled alternatives' (`scored_secrets`)."""
    canaries = plan.config.dp_audit.canaries
    secrets = scored_secrets(plan.config)
    texts = secret_texts(canaries.secret_format, canaries.secret_digits, secrets)
    folder = hf_folder(plan.config)
    if folder is None:
        return torch.from_numpy(encode(texts, plan.pool.x.shape[1])).to(device)
    return torch.from_numpy(hf_tokens(texts, folder)[0]).to(device)


def _save_tokens(
    plan: Plan, run: RunDir, m: int, logits: np.ndarray, stats: dict[str, np.ndarray]
) -> None:
    """A causal LM's outputs (`query_tokens`): its token statistics, its two-class logits, then
    its meta.json with their stamps, the query hash and the mean token NLL of its IN and OUT
    records (in place of accuracies)."""
    for name, array in stats.items():
        save_npy(run.token_stat(m, name), array)
    for name in (RECALL_STAT, SECRET_STAT):  # from a query with a prefix or secrets now gone
        if name not in stats:
            run.token_stat(m, name).unlink(missing_ok=True)
    save_npy(run.logits(m), logits)
    keep_row = plan.keep[m]
    nll = -logits[:, 0, 0].astype(np.float64)
    meta = run.read_meta(m) or {}
    meta.update(
        {
            "query_hash": plan.query_hash(m, meta.get("device", "cuda")),
            "logits": file_stamp(run.logits(m)),
            "tokens": {name: file_stamp(run.token_stat(m, name)) for name in stats},
            "token_nll_in": float(nll[keep_row].mean()),
            "token_nll_out": float(nll[~keep_row].mean()),
        }
    )
    save_json(run.meta(m), meta)


def _check_stamp(run: RunDir, path: Path, m: int) -> None:
    stamp = (run.read_meta(m) or {}).get("weights")
    if isinstance(stamp, dict) and stamped_hash(path, stamp) != stamp.get("sha256"):
        raise MiakitError(
            f"{path} is not the file model {m} was trained to (missing, overwritten or "
            f"truncated); `miakit train {run.root}` retrains it"
        )


def _fitted_estimator(plan: Plan, run: RunDir, m: int):
    """Model m's fitted estimator (arch sklearn), checked against its meta.json stamp."""
    _check_stamp(run, run.estimator(m), m)
    model = plan.config.model
    return load_estimator(run.estimator(m), model.estimator or "", model.standardize)


def _queryable(
    plan: Plan, run: RunDir, data: FeatureSource, m: int
) -> tuple[torch.nn.Module, dict | None]:
    """Model m as the query stage asks it: its trained weights, wrapped by the calibration its
    defences ask for, and what was fitted (for meta.json)."""
    model = data.new_model(plan).to(data.device)
    _check_stamp(run, run.weights(m), m)
    model.load_state_dict(load_file(str(run.weights(m)), device=str(data.device)))
    return _calibrated(plan, data, m, model)


#: Held-out records for fitting a calibration when the pool has no test split: a seeded subset
#: of the model's own OUT records (one scalar is fitted on them, so they leak next to nothing).
CALIBRATION_RECORDS = 1000


def _calibrated(
    plan: Plan, data: FeatureSource, m: int, model: torch.nn.Module
) -> tuple[torch.nn.Module, dict | None]:
    """The model as queried: wrapped by temperature scaling or last-layer Laplace where the
    defences ask for it, and what was fitted (for meta.json)."""
    defences = plan.config.defences
    if not plan.defended(m) or not (defences.temperature_scaling or defences.laplace.enabled):
        return model, None
    if data.held_out is not None:
        held_x, held_y = data.held_out
    else:
        out = np.flatnonzero(~plan.keep[m])
        pick = rng(plan.config.seed, "calibration", m).permutation(out)[:CALIBRATION_RECORDS]
        index = torch.from_numpy(np.sort(pick)).to(data.device)
        held_x, held_y = data.x[index], data.y[index]
    if defences.temperature_scaling:
        held_logits = query_logits(model, held_x, 1, norm=data.norm)[:, 0]
        scaled = temperature_scaled(model, held_logits, held_y.cpu().numpy())
        return scaled, {"temperature": scaled.temperature}
    rows = torch.from_numpy(np.flatnonzero(plan.keep[m])).to(data.device)
    laplace = fit_laplace(
        model,
        data.x[rows],
        data.y[rows],
        defences.laplace,
        held_out=(held_x, held_y),
        norm=data.norm,
        seed=derive_seed(plan.config.seed, "laplace", m),
    )
    return laplace, {"laplace_prior_precision": laplace.prior_precision}


def query_all(plan: Plan, run: RunDir, x: np.ndarray) -> np.ndarray:
    """Every model's logits [M, K, A, C] on records x shaped like the pool's (the
    out-of-distribution study), exactly as the query stage queries the pool: same views,
    BatchNorm mode and calibration."""
    if is_sklearn(plan.config.model.arch):
        return np.stack(
            [
                estimator_logits(_fitted_estimator(plan, run, m), x, plan.pool.num_classes)
                for m in range(len(plan.keep))
            ]
        )
    data = feature_source(plan, run)
    out = []
    for m in range(len(plan.keep)):
        model, _ = _queryable(plan, run, data, m)
        out.append(data.query_records(model, x, plan.config.query))
    return np.stack(out)


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
