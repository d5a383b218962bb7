"""Planning a run: the pool, the keep matrix, and the content hashes that say when a model is current."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from miakit.config import AuditConfig, dump_config, read_run_config
from miakit.data import Pool, load_pool, make_split
from miakit.data.canaries import canary_keep, canary_records, insert_canaries
from miakit.errors import MiakitError
from miakit.seeding import rng
from miakit.store import RunDir, array_hash, content_hash, load_npy, save_json, save_npy, save_text


@dataclass(frozen=True)
class Plan:
    config: AuditConfig
    pool: Pool
    keep: np.ndarray
    fingerprint: str
    targets: tuple[int, ...]  # the models attacked in turn; the others are references only

    def defended(self, m: int) -> bool:
        """Whether the configured defences apply to model m (defences.apply_to)."""
        apply_to = self.config.defences.apply_to
        return apply_to == "all" or (m in self.targets) == (apply_to == "targets")

    @cached_property
    def training_inputs(self) -> dict[str, Any]:
        """Computed once per plan: with a user folder it lists the folder."""
        return self.config.training_inputs()

    def train_hash(self, m: int) -> str:
        return train_hash(self.training_inputs, self.fingerprint, self.keep[m], m)

    def query_hash(self, m: int) -> str:
        return query_hash(self.training_inputs, self.config, self.fingerprint, self.keep[m], m)


def load_configured_pool(config: AuditConfig) -> Pool:
    """The configured data set's pool, with its canaries (dp_audit.canaries) in place."""
    data = config.data
    pool = load_pool(
        data.name,
        data.data_dir,
        path=data.path,
        subsample=data.subsample,
        seed=subsample_seed(config),
        download=data.download,
    )
    records = configured_canaries(config, pool.num_records)
    if len(records) == 0:
        return pool
    kind = config.dp_audit.canaries.kind
    return insert_canaries(pool, records, kind, rng(config.seed, "canary-content"))


def configured_canaries(config: AuditConfig, num_records: int) -> np.ndarray:
    """The pool indices of the run's canaries (int64 [m], sorted; empty without canaries)."""
    return canary_records(num_records, config.dp_audit.canaries.count, rng(config.seed, "canaries"))


def subsample_seed(config: AuditConfig) -> int:
    """The seed of the draw of data.subsample's records."""
    return config.seed if config.data.subsample_seed is None else config.data.subsample_seed


def plan(config: AuditConfig, run: RunDir) -> Plan:
    """Load the pool, draw the split and write run.yaml, keep.npy, labels.npy, split.json (with
    eval_records.npy / pair_records.npy where the strategy has them) and pool.json."""
    pool = load_configured_pool(config)
    s = config.split
    split = make_split(
        s.strategy,
        s.num_models,
        pool.num_records,
        rng(config.seed, "keep"),
        labels=pool.y,
        num_targets=s.num_targets,
        target_fraction=s.target_fraction,
        records=s.records,
    )
    keep = split.keep
    canaries = configured_canaries(config, pool.num_records)
    if len(canaries):
        if s.strategy == "single_point":
            raise MiakitError("dp_audit.canaries: not with split.strategy single_point")
        keep = canary_keep(keep, canaries, rng(config.seed, "canary-keep"))
    targets = list(split.targets)
    if config.evaluate.targets is not None:
        if config.evaluate.targets > len(targets):
            raise MiakitError(
                f"evaluate.targets: {config.evaluate.targets} targets asked for but the "
                f"{s.strategy} split has {len(targets)}"
            )
        targets = targets[: config.evaluate.targets]
    save_text(run.run_yaml, dump_config(config))
    save_npy(run.keep, keep)
    save_npy(run.labels, pool.y)
    for path, array in [
        (run.eval_records, split.eval_records),
        (run.pair_records, split.pair_records),
    ]:
        if array is None:
            path.unlink(missing_ok=True)
        else:
            save_npy(path, array)
    save_json(run.split, {**split.describe(), "targets": targets})
    fingerprint = pool.fingerprint()
    save_json(
        run.pool,
        {
            "name": pool.name,
            "fingerprint": fingerprint,
            "num_records": pool.num_records,
            "num_classes": pool.num_classes,
            "input_shape": list(pool.x.shape[1:]),
            "targets": targets,
        },
    )
    return Plan(config, pool, keep, fingerprint, tuple(targets))


@dataclass(frozen=True)
class Design:
    """Who is attacked with whose help, on which records."""

    targets: list[int]
    references: list[int] | None  # None: every model but the target (leave-one-out)
    eval_records: np.ndarray | None  # bool [N]; None: all records


def evaluation_design(run: RunDir, config: AuditConfig, num_models: int) -> Design:
    """From split.json where the run was planned; else (brought-in models) leave-one-out over
    the first `evaluate.targets` models (default all)."""
    if run.split.is_file():
        split = json.loads(run.split.read_text())
        eval_records = load_npy(run.eval_records) if run.eval_records.is_file() else None
        return Design(split["targets"], split["references"], eval_records)
    count = config.evaluate.targets or num_models
    if count > num_models:
        raise MiakitError(f"evaluate.targets is {count} but the run has {num_models} models")
    return Design(list(range(count)), None, None)


def load_plan(run: RunDir) -> Plan:
    """Reopen a planned run; the data must still be the data it was planned on."""
    if not run.run_yaml.is_file():
        raise MiakitError(f"{run.root} has no run.yaml: plan it first with `miakit audit --out`")
    config = read_run_config(run.run_yaml)
    pool = load_configured_pool(config)
    fingerprint = _recorded_fingerprint(run)
    if fingerprint != pool.fingerprint():
        raise MiakitError(
            f"the data set {pool.name!r} differs from the one {run.root} was planned on; "
            "plan the run again with `miakit audit`"
        )
    targets = json.loads(run.split.read_text())["targets"] if run.split.is_file() else []
    return Plan(config, pool, load_npy(run.keep), fingerprint, tuple(targets))


def _recorded_fingerprint(run: RunDir) -> str:
    try:
        return json.loads(run.pool.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError) as exc:
        raise MiakitError(f"{run.pool} is missing or unreadable; plan the run again") from exc


def train_hash(
    training_inputs: dict[str, Any], fingerprint: str, keep_row: np.ndarray, m: int
) -> str:
    """Everything that determines model m's weights (`training_inputs`: the config's
    training_inputs()): anything else changed means retrain."""
    return content_hash(
        {
            **training_inputs,
            "pool": fingerprint,
            "keep_row": array_hash(keep_row),
            "model_index": m,
        }
    )


def query_hash(
    training_inputs: dict[str, Any],
    config: AuditConfig,
    fingerprint: str,
    keep_row: np.ndarray,
    m: int,
) -> str:
    train = train_hash(training_inputs, fingerprint, keep_row, m)
    return content_hash({"train": train, **config.query.model_dump(mode="json")})


def outdated_models(run: RunDir) -> list[int]:
    """Models of a planned run whose logits are missing or do not match the current plan."""
    config, fingerprint = read_run_config(run.run_yaml), _recorded_fingerprint(run)
    keep, inputs = load_npy(run.keep), config.training_inputs()
    return [
        m
        for m in range(len(keep))
        if not (
            model_done(run, m, "query_hash", query_hash(inputs, config, fingerprint, keep[m], m))
            and run.logits(m).is_file()
        )
    ]


def model_done(run: RunDir, m: int, key: str, expected: str) -> bool:
    """True when model m's meta.json records `expected` under `key` (train_hash or query_hash)."""
    meta = run.read_meta(m)
    return meta is not None and meta.get(key) == expected
