"""Planning a run: the pool, the keep matrix, and the content hashes that say when a model is current."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from miakit.architectures import is_hf, is_sklearn
from miakit.config import AuditConfig, TrainConfig, dump_config, read_run_config
from miakit.config.defences import DefenceConfig
from miakit.data import USER_DATA, Pool, load_pool, make_split
from miakit.data.canaries import (
    canary_keep,
    canary_records,
    draw_alternatives,
    draw_secrets,
    enumerates_alternatives,
    insert_canaries,
    insert_secrets,
)
from miakit.data.registry import check_classes
from miakit.data.text import load_prefix
from miakit.errors import MiakitError
from miakit.seeding import rng
from miakit.store import (
    RunDir,
    array_hash,
    clear_leftovers,
    content_hash,
    json_text,
    load_npy,
    npy_bytes,
    save_bytes_if_changed,
    stamped_hash,
)
from miakit.tokens import RECALL_STAT, SECRET_STAT, TOKEN_STATS
from miakit.validate import (
    check_attack_options,
    check_attack_settings,
    check_design,
    check_evaluation_settings,
    check_model,
    check_output_attacks,
    check_output_dir,
    check_split_memory,
    check_target_checkpoint,
    estimator_attack_options,
    resolve_attacks,
    target_members,
)


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

    def dp_applies(self, m: int) -> bool:
        return self.config.defences.dp.enabled and self.defended(m)

    @cached_property
    def training_inputs(self) -> dict[str, Any]:
        """Computed once per plan: with a user folder it lists the folder."""
        return self.config.training_inputs()

    def train_hash(self, m: int, device: str = "cuda") -> str:
        """Model m's train hash when trained on `device` ("cpu" or "cuda"); for a target
        trained elsewhere (model.target_weights), the hash of its checkpoint's content."""
        return train_hash(
            self.training_inputs,
            self.fingerprint,
            self.keep[m],
            m,
            device,
            self.dp_applies(m),
            checkpoint_inputs(self.config, m),
        )

    def query_hash(self, m: int, device: str = "cuda") -> str:
        return query_hash(
            self.training_inputs,
            self.config,
            self.fingerprint,
            self.keep[m],
            m,
            device,
            self.defended(m),
        )


def load_configured_pool(config: AuditConfig) -> Pool:
    """The configured data set's pool, with its canaries (dp_audit.canaries) in place; for an hf
    arch, its text records tokenized by the model's tokenizer, or its images as the model's
    image processor gives them (`miakit.hf.image_pool`, after the canaries)."""
    from miakit import hf

    data, model = config.data, config.model
    if is_hf(model.arch) and model.task != hf.IMAGE_TASK:
        return _with_canaries(config, _hf_text_pool(config))
    pool = load_pool(
        data.name,
        data.data_dir,
        path=data.path,
        subsample=data.subsample,
        seed=subsample_seed(config),
        download=data.download,
    )
    pool = _with_canaries(config, pool)
    if not is_hf(model.arch):
        return pool
    hf.require_text_extra(f"model.arch {model.arch}")
    return hf.image_pool(pool, hf.model_folder(model.arch, model.task), model.arch)


def _with_canaries(config: AuditConfig, pool: Pool) -> Pool:
    """The pool with its canaries (dp_audit.canaries) in place."""
    records = configured_canaries(config, pool.num_records)
    if len(records) == 0:
        return pool
    canaries = config.dp_audit.canaries
    if canaries.kind == "secret":
        secrets = configured_secrets(config)
        folder = hf_folder(config)
        return insert_secrets(
            pool, records, secrets, canaries.secret_format, canaries.secret_digits, folder
        )
    return insert_canaries(pool, records, canaries.kind, rng(config.seed, "canary-content"))


def configured_secrets(config: AuditConfig) -> np.ndarray:
    """The secrets of the run's secret canaries (int64 [m], canary i of configured_canaries
    holds secret i; `miakit.data.canaries.draw_secrets`)."""
    canaries = config.dp_audit.canaries
    return draw_secrets(canaries.count, canaries.secret_digits, rng(config.seed, "canary-content"))


def configured_alternatives(config: AuditConfig) -> np.ndarray | None:
    """The alternatives the query scores besides the canaries' secrets where R is too large to
    enumerate: int64 [secret_samples], drawn from the run's seed among the secrets no canary
    holds (`miakit.data.canaries.draw_alternatives`); None where every secret of R is scored
    (`enumerates_alternatives`)."""
    canaries = config.dp_audit.canaries
    count, digits, samples = canaries.count, canaries.secret_digits, canaries.secret_samples
    if enumerates_alternatives(count, digits, samples):
        return None
    draw = rng(config.seed, "secret-alternatives")
    return draw_alternatives(configured_secrets(config), digits, samples, draw)


def scored_secrets(config: AuditConfig) -> np.ndarray:
    """The secrets whose texts each model's query scores (SECRET_STAT, int64 [k]): all of R,
    0..10^d − 1, where it is enumerated; else the canaries' secrets (configured_secrets)
    followed by the sampled alternatives (configured_alternatives)."""
    sample = configured_alternatives(config)
    if sample is None:
        return np.arange(10**config.dp_audit.canaries.secret_digits, dtype=np.int64)
    return np.concatenate([configured_secrets(config), sample])


def _hf_text_pool(config: AuditConfig) -> Pool:
    """The text records of data.path (a file or a saved Dataset folder) tokenized by the hf
    model's tokenizer, subsampled as data.subsample says (before any canaries)."""
    from miakit import hf
    from miakit.data.registry import subsample_pool
    from miakit.data.text import TEXT_SUFFIXES, is_saved_dataset, load_hf_text

    data, model = config.data, config.model
    hf.require_text_extra(f"model.arch {model.arch}")
    path = Path(data.path).expanduser() if data.path is not None else None
    if data.name != USER_DATA or path is None:
        raise MiakitError(
            f"model.task {model.task} takes text records, data.name user with a data.path of "
            f"{', '.join(TEXT_SUFFIXES)} or a saved datasets.Dataset folder; images take "
            "model.task image-classification"
        )
    if not (path.is_file() and path.suffix in TEXT_SUFFIXES) and not (
        path.is_dir() and is_saved_dataset(path)
    ):
        raise MiakitError(
            f"data.path: {path} is no {', '.join(TEXT_SUFFIXES)} file or saved datasets.Dataset "
            f"folder of text records, which model.task {model.task} takes; images take "
            "model.task image-classification"
        )
    pool = load_hf_text(path, hf.model_folder(model.arch, model.task), model.task)
    if not pool.is_text:
        check_classes(pool, f"data.path {path}: label", True)
    return (
        pool
        if data.subsample is None
        else subsample_pool(pool, data.subsample, subsample_seed(config))
    )


def hf_folder(config: AuditConfig) -> Path | None:
    """The checked local folder of an hf arch's model and tokenizer (`miakit.hf.model_folder`),
    or None for another arch."""
    if not is_hf(config.model.arch):
        return None
    from miakit import hf

    return hf.model_folder(config.model.arch, config.model.task)


def configured_canaries(config: AuditConfig, num_records: int) -> np.ndarray:
    """The pool indices of the run's canaries (int64 [m], sorted; empty without canaries)."""
    return canary_records(num_records, config.dp_audit.canaries.count, rng(config.seed, "canaries"))


def subsample_seed(config: AuditConfig) -> int:
    """The seed of the draw of data.subsample's records."""
    return config.seed if config.data.subsample_seed is None else config.data.subsample_seed


def plan(config: AuditConfig, run: RunDir, log: Callable[[str], None] | None = None) -> Plan:
    """Check the whole audit, then load the pool, draw the split and write run.yaml, keep.npy,
    labels.npy, split.json (with eval_records.npy / pair_records.npy where the strategy has them)
    and pool.json.

    Nothing is written when a check fails (MiakitError: attacks and their options, an attack
    that reads query.output's answer, architecture, query views against the data kind, a user's
    module (imported) or estimator (built from model.params), a target checkpoint and its
    members, the references and records each attack needs, each attack's options against the
    classes, references and loss traces (`Attack.check`), the output folder), and files whose
    content is unchanged are left untouched. `attacks: all` is expanded in the returned plan's
    config and in run.yaml, as are RMIA's signal for estimators and the target checkpoint's and
    ReCaLL prefix's paths (made absolute). With `log`, a config that changes an existing
    run is described (what changed, what will be redone). Model folders beyond num_models are
    removed.
    """
    check_output_dir(run.root)
    config = config.model_copy(update={"attacks": resolve_attacks(config.attacks)})
    config = estimator_attack_options(config)
    model = config.model
    if model.target_weights is not None and model.target_members is not None:
        # absolute in run.yaml: the checkpoint's hash is read wherever a later stage runs
        resolved = {
            "target_weights": Path(model.target_weights).resolve(),
            "target_members": Path(model.target_members).resolve(),
        }
        config = config.model_copy(update={"model": model.model_copy(update=resolved)})
    if config.query.recall_prefix is not None:  # absolute in run.yaml, as the checkpoint's
        prefix = {"recall_prefix": Path(config.query.recall_prefix).expanduser().resolve()}
        config = config.model_copy(update={"query": config.query.model_copy(update=prefix)})
    check_attack_options(config)
    check_output_attacks(config)
    pool = load_configured_pool(config)
    check_split_memory(config, pool.num_records)
    check_evaluation_settings(config, pool.num_records)
    check_model(config, pool)
    check_target_checkpoint(config, pool)
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
    if config.model.target_weights is not None:  # checked by check_target_checkpoint
        keep = keep.copy()
        keep[CHECKPOINT_MODEL] = target_members(config, pool.num_records)
        targets = [CHECKPOINT_MODEL]
    if config.evaluate.targets is not None:
        if config.evaluate.targets > len(targets):
            raise MiakitError(
                f"evaluate.targets: {config.evaluate.targets} targets asked for but the "
                f"{s.strategy} split has {len(targets)}"
            )
        targets = targets[: config.evaluate.targets]
    check_attack_settings(config, pool.num_classes, len(keep), targets, split.references)
    check_design(config, keep, targets, split.references, split.eval_records, config.attacks)
    fingerprint = pool.fingerprint()
    planned = Plan(config, pool, keep, fingerprint, tuple(targets))
    if log is not None:
        for line in describe_changes(run, planned):
            log(line)
    clear_leftovers(run.root)
    save_bytes_if_changed(run.run_yaml, dump_config(config).encode())
    save_bytes_if_changed(run.keep, npy_bytes(keep))
    save_bytes_if_changed(run.labels, npy_bytes(pool.y))
    for path, array in [
        (run.eval_records, split.eval_records),
        (run.pair_records, split.pair_records),
    ]:
        if array is None:
            path.unlink(missing_ok=True)
        else:
            save_bytes_if_changed(path, npy_bytes(array))
    save_bytes_if_changed(run.split, json_text({**split.describe(), "targets": targets}).encode())
    pool_json = {
        "name": pool.name,
        "fingerprint": fingerprint,
        "labels_hash": array_hash(pool.y),
        "num_records": pool.num_records,
        "num_classes": pool.num_classes,
        "input_shape": list(pool.x.shape[1:]),
        "targets": targets,
    }
    save_bytes_if_changed(run.pool, json_text(pool_json).encode())
    for m in orphan_models(run, len(keep)):
        shutil.rmtree(run.model_dir(m))
    return planned


def orphan_models(run: RunDir, num_models: int) -> list[int]:
    """Indices of the run's model folders beyond the plan's num_models."""
    folders = run.root / "models"
    if not folders.is_dir():
        return []
    found = [int(p.name) for p in folders.iterdir() if re.fullmatch(r"\d{4,}", p.name)]
    return sorted(m for m in found if m >= num_models)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out |= _flat(value, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: tree}


def describe_changes(run: RunDir, planned: Plan) -> list[str]:
    """How `planned` differs from the run's previous plan and what will be redone, e.g.
    "runs/x: train.epochs 20 → 21: 16 of 16 models retrain"; nothing for a new or unchanged run."""
    if not run.run_yaml.is_file():
        return []
    try:
        before = read_run_config(run.run_yaml)
    except MiakitError:
        return [f"{run.run_yaml} is unreadable: the run is planned afresh"]
    old, new = _flat(before.model_dump(mode="json")), _flat(planned.config.model_dump(mode="json"))
    changes = [
        f"{key} {old.get(key, '(unset)')} → {new.get(key, '(unset)')}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    if not changes:
        return []
    num_models = len(planned.keep)
    had = [m for m in range(num_models) if run.meta(m).is_file()]
    retrain = [m for m in had if not trained(run, planned, m)]
    requery = [m for m in had if m not in retrain and not queried(run, planned, m)]
    orphans = orphan_models(run, num_models)
    redo = [f"{len(retrain)} of {len(had)} trained models retrain"]
    if requery:
        redo.append(f"{len(requery)} are queried again")
    if orphans:
        redo.append(f"models {orphans[0]}–{orphans[-1]} are removed (no longer in the plan)")
    return [f"{run.root} changes: " + ", ".join(changes) + ": " + "; ".join(redo)]


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
    return Plan(config, pool, load_npy(run.keep), fingerprint, _recorded_targets(run))


def _recorded_fingerprint(run: RunDir) -> str:
    try:
        return json.loads(run.pool.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError) as exc:
        raise MiakitError(f"{run.pool} is missing or unreadable; plan the run again") from exc


def _recorded_targets(run: RunDir) -> tuple[int, ...]:
    return tuple(json.loads(run.split.read_text())["targets"]) if run.split.is_file() else ()


def check_labels(run: RunDir) -> None:
    """A planned run's labels.npy still holds the labels it was planned with (pool.json records
    their hash); an edited file is an error naming the command that restores it."""
    try:
        recorded = json.loads(run.pool.read_text()).get("labels_hash")
    except (OSError, ValueError):
        return
    if recorded is not None and array_hash(load_npy(run.labels)) != recorded:
        raise MiakitError(
            f"{run.labels} differs from the labels {run.root} was planned with (edited?); "
            f"`miakit audit --out {run.root}` with its config writes them again"
        )


#: The settings each kind of training ignores, hashed as their defaults: CPU training has no
#: bf16 autocast or channels_last; DP-SGD trains in full precision, uncompiled.
IGNORED_ON_CPU = ("bf16", "channels_last")
IGNORED_UNDER_DP = ("bf16", "compile")
#: Defences applied to a trained model's outputs: in the query hash, not the train hash.
QUERY_SIDE_DEFENCES = ("temperature_scaling", "laplace")


def effective_training_inputs(
    training_inputs: dict[str, Any], device: str, dp_applies: bool
) -> dict[str, Any]:
    """`training_inputs` (the config's training_inputs()) as training on `device` ("cpu" or
    "cuda") uses them: settings it ignores and the query-side defences are put at their defaults,
    so that changing them retrains nothing (and default configs keep their hashes)."""
    train_defaults = TrainConfig().model_dump(mode="json")
    ignored = [*(IGNORED_ON_CPU if device != "cuda" else ()), *(IGNORED_UNDER_DP * dp_applies)]
    train = dict(training_inputs["train"]) | {k: train_defaults[k] for k in ignored}
    defaults = DefenceConfig().model_dump(mode="json")
    defences = dict(training_inputs["defences"]) | {k: defaults[k] for k in QUERY_SIDE_DEFENCES}
    return {**training_inputs, "train": train, "defences": defences}


def train_hash(
    training_inputs: dict[str, Any],
    fingerprint: str,
    keep_row: np.ndarray,
    m: int,
    device: str = "cuda",
    dp_applies: bool = False,
    checkpoint: dict[str, Any] | None = None,
) -> str:
    """Everything that determines model m's weights when trained on `device` (`training_inputs`:
    the config's training_inputs()): anything else changed means retrain. `checkpoint`
    (`checkpoint_inputs`): the target checkpoint model m is read from instead of trained."""
    inputs = {
        **effective_training_inputs(training_inputs, device, dp_applies),
        "pool": fingerprint,
        "keep_row": array_hash(keep_row),
        "model_index": m,
    }
    return content_hash(inputs if checkpoint is None else inputs | {"checkpoint": checkpoint})


#: The model a target checkpoint (model.target_weights) becomes: the first, and the only target.
CHECKPOINT_MODEL = 0


def checkpoint_inputs(config: AuditConfig, m: int) -> dict[str, Any] | None:
    """For the model read from model.target_weights, the checkpoint's SHA-256 (None when the
    file is gone: the model is then stale); None for every model miakit trains."""
    path = config.model.target_weights
    if path is None or m != CHECKPOINT_MODEL:
        return None
    return {"sha256": stamped_hash(Path(path))}


def weights_file(run: RunDir, config: AuditConfig, m: int) -> Path:
    """Where model m's trained parameters live: estimator.skops (arch sklearn), else
    weights.safetensors."""
    return run.estimator(m) if is_sklearn(config.model.arch) else run.weights(m)


def query_hash(
    training_inputs: dict[str, Any],
    config: AuditConfig,
    fingerprint: str,
    keep_row: np.ndarray,
    m: int,
    device: str = "cuda",
    defended: bool = False,
) -> str:
    """The train hash, the query settings, and the calibration applied to model m's outputs
    (temperature scaling or Laplace, where the defences apply to m)."""
    dp_applies = config.defences.dp.enabled and defended
    checkpoint = checkpoint_inputs(config, m)
    train = train_hash(training_inputs, fingerprint, keep_row, m, device, dp_applies, checkpoint)
    # query.output restricts what attacks read of the stored logits: it changes no logits; the
    # ReCaLL prefix counts by its tokens, and only where there is one (other hashes unchanged)
    query = config.query
    excluded = {"output", "recall_prefix", "recall_shots"}
    inputs = {"train": train, **query.model_dump(mode="json", exclude=excluded)}
    if query.recall_prefix is not None:
        prefix = load_prefix(query.recall_prefix, query.recall_shots, hf_folder(config))[1]
        inputs["recall_prefix"] = array_hash(prefix)
    if has_secrets(config):  # the alternatives each model scores
        canaries = config.dp_audit.canaries
        inputs["secrets"] = [canaries.secret_format, canaries.secret_digits]
        sample = configured_alternatives(config)
        if sample is not None:  # which of R (the canaries' secrets are pool records: in train)
            inputs["secrets"].append(array_hash(sample))
    defences = config.defences
    if defended and (defences.temperature_scaling or defences.laplace.enabled):
        inputs["calibration"] = defences.model_dump(mode="json", include=set(QUERY_SIDE_DEFENCES))
    return content_hash(inputs)


class Hashes:
    """A planned run's content hashes without its pool, from run.yaml, pool.json, keep.npy and
    split.json: what `attack`, `evaluate` and `status` need to tell current models from stale."""

    def __init__(self, run: RunDir):
        self.config = read_run_config(run.run_yaml)
        self.fingerprint = _recorded_fingerprint(run)
        self.keep = load_npy(run.keep)
        self.targets = _recorded_targets(run)
        self.training_inputs = self.config.training_inputs()

    defended = Plan.defended
    dp_applies = Plan.dp_applies
    train_hash = Plan.train_hash
    query_hash = Plan.query_hash


def trained(run: RunDir, hashes: Plan | Hashes, m: int) -> bool:
    """Model m's meta.json records the train hash of its current inputs (on the device it was
    trained on), and its weights file is the one meta.json records (SHA-256; the file is read
    only when its size or times changed). Overwritten or truncated weights: not trained."""
    meta = run.read_meta(m)
    if meta is None or meta.get("train_hash") != hashes.train_hash(m, meta.get("device", "cuda")):
        return False
    return _recorded_file(weights_file(run, hashes.config, m), meta.get("weights"))


def queried(run: RunDir, hashes: Plan | Hashes, m: int) -> bool:
    """Model m's logits are current: meta.json records the train and query hashes of its current
    inputs, and logits.npy is the file it records (the weights are not read: the logits are what
    later stages use)."""
    meta = run.read_meta(m)
    if meta is None:
        return False
    device = meta.get("device", "cuda")
    if meta.get("train_hash") != hashes.train_hash(m, device):
        return False
    if meta.get("query_hash") != hashes.query_hash(m, device):
        return False
    tokens = meta.get("tokens")  # a causal LM's token statistics
    if isinstance(tokens, dict):
        names = token_stats(hashes.config)
        if not all(_recorded_file(run.token_stat(m, n), tokens.get(n)) for n in names):
            return False
    return _recorded_file(run.logits(m), meta.get("logits"))


def token_stats(config: AuditConfig) -> tuple[str, ...]:
    """The statistics a causal LM's query writes under `config`: TOKEN_STATS, RECALL_STAT with
    query.recall_prefix, SECRET_STAT with secret canaries (`miakit.tokens`)."""
    names = TOKEN_STATS
    if config.query.recall_prefix is not None:
        names += (RECALL_STAT,)
    if has_secrets(config):
        names += (SECRET_STAT,)
    return names


def has_secrets(config: AuditConfig) -> bool:
    """Whether the run plants secret canaries (dp_audit.canaries kind secret, count > 0)."""
    canaries = config.dp_audit.canaries
    return canaries.count > 0 and canaries.kind == "secret"


def _recorded_file(path: Path, stamp: Any) -> bool:
    """`path` is the file meta.json's `stamp` records (read only when its size or times changed);
    a meta.json written before files were stamped records none: then the file need only exist."""
    if not isinstance(stamp, dict):
        return path.is_file()
    return stamped_hash(path, stamp) == stamp.get("sha256")


def outdated_models(run: RunDir) -> list[int]:
    """Models of a planned run whose logits are missing or do not match the current plan."""
    hashes = Hashes(run)
    return [m for m in range(len(hashes.keep)) if not queried(run, hashes, m)]
