"""Planning a run: the pool, the keep matrix, and the content hashes that say when a model is current."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from miakit.config import AuditConfig, dump_config, read_run_config
from miakit.data import Pool, balanced_keep, load_pool
from miakit.errors import MiakitError
from miakit.seeding import rng
from miakit.store import RunDir, array_hash, content_hash, load_npy, save_json, save_npy, save_text


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
            model_done(run, m, "query_hash", query_hash(config, fingerprint, keep[m], m))
            and run.logits(m).is_file()
        )
    ]


def model_done(run: RunDir, m: int, key: str, expected: str) -> bool:
    """True when model m's meta.json records `expected` under `key` (train_hash or query_hash)."""
    meta = run.read_meta(m)
    return meta is not None and meta.get(key) == expected
