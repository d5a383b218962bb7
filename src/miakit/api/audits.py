"""The public API for a whole audit: `audit`, what `miakit audit` runs, from a config file, a
dict in the YAML's shape or an AuditConfig, and optionally in-memory data and a scikit-learn
estimator.

In-memory inputs join the one pipeline as the config forms it already has, so the run records
them and resumes from the CLI as any other: data arrays are written into the run as the user
data kind (`<run>/data.npz`, `data.name: user`, its fingerprint in pool.json), and an estimator
instance becomes `model.arch: sklearn` with its class's import path and its constructor
arguments (`get_params`), from which every model is built afresh, as `sklearn.base.clone` builds
a copy. A factory function becomes a `memory:` arch (`architectures.register_factory`): its
models train in this process only.
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from miakit import pipeline
from miakit.api.runs import Run
from miakit.architectures import register_factory
from miakit.config import AuditConfig, apply_override, format_validation_error, load_config
from miakit.errors import MiakitError
from miakit.store import RunDir, write_atomic

#: Where in-memory data is written inside the run.
DATA_FILE = "data.npz"


def audit(
    config: str | os.PathLike | dict | AuditConfig | None = None,
    out: str | os.PathLike = "runs/audit",
    *,
    data: Sequence[np.ndarray] | None = None,
    model: Any = None,
    overrides: Sequence[str] = (),
) -> Run:
    """Plan, train, query, attack, evaluate and report a whole audit, as `miakit audit`, and
    return its run. Every stage resumes and redoes exactly what is stale: calling it again with
    the same inputs writes nothing; after an interruption (KeyboardInterrupt, Ctrl-C), the
    models saved are kept and the same call, or `miakit audit --out OUT` with run.yaml's config,
    resumes. Progress shows as the CLI's: a live bar on a terminal, else a line per stage every
    10 s (scripts, logs, notebooks).

    Args:
        config: a YAML config file's path, a dict in the YAML's shape (e.g.
            `{"split": {"num_models": 16}, "attacks": ["lira-online", "rmia"]}`), an
            AuditConfig, or None for the defaults.
        out: the run directory (created; an existing run is resumed or updated).
        data: in-memory records instead of `data.name`: (x, y) or (x, y, x_test, y_test), x
            numeric features [N, D] or uint8 images [N, H, W(, C)], y int labels [N] from 0.
            Written to `<out>/data.npz` and audited as `data.name: user` (`data.subsample` and
            the other data settings still apply).
        model: a scikit-learn classifier instance (with predict_proba) instead of `model.*`: its
            class (one of the estimators a config may name: `miakit models list`) and its
            `get_params(deep=False)` become model.estimator and model.params, so every model is
            a fresh copy of it, as `sklearn.base.clone` makes, fitted on its own records.
            random_state is set per model from the run's seed (any given is replaced). Or a
            factory(input_shape, num_classes) returning a fresh torch.nn.Module that maps a batch
            of records (features [B, D]; images [B, C, H, W], normalized) to logits
            [B, num_classes], trained with train.*: run.yaml records it as model.arch
            `memory:<name>@<hash of its source>`, so changing its code retrains; only this
            process has it (execution.executor must be local), and resuming such a run from the
            CLI stops with an error saying to resume it from Python with the same factory.
        overrides: `--set`-style assignments applied to the config, e.g. ["train.epochs=10"].

    Returns:
        The finished `Run`.

    Raises:
        MiakitError: a bad config (naming the key path), data or model, with the messages of
            `miakit audit`, before anything is trained; a stage's failure.
        KeyboardInterrupt: interrupted; a line on stderr says how many models are saved.
    """
    cfg = _resolve_config(config, overrides)
    root = Path(out)
    fresh = not root.exists()
    if model is not None:
        cfg = _updated(cfg, "model", _model_settings(model))
    if data is not None:
        cfg = _updated(cfg, "data", _data_settings(data, root))
    run = RunDir(root)
    try:
        pipeline.audit(cfg, run)
    except MiakitError:
        if fresh and not run.run_yaml.is_file():  # nothing half-written: the folder made here
            (root / DATA_FILE).unlink(missing_ok=True)
            if root.is_dir() and not any(root.iterdir()):
                root.rmdir()
        raise
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {pipeline.saved_models(run)} Run the same call again to resume.",
            file=sys.stderr,
            flush=True,
        )
        raise
    return Run(root)


def _resolve_config(config, overrides: Sequence[str]) -> AuditConfig:
    """The AuditConfig of a path, a dict, an AuditConfig or None, with `overrides` applied."""
    if config is None or isinstance(config, (str, os.PathLike)):
        return load_config(None if config is None else Path(config), list(overrides))
    if isinstance(config, AuditConfig):
        if not overrides:
            return config
        raw = config.model_dump(mode="json")
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
    else:
        raise MiakitError(
            f"config must be a path, a dict or an AuditConfig, got {type(config).__name__}"
        )
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as exc:
        raise MiakitError(format_validation_error(exc)) from exc


def _updated(config: AuditConfig, section: str, settings: dict[str, Any]) -> AuditConfig:
    """The config with `settings` replacing those of `section`, validated again."""
    raw = config.model_dump(mode="json")
    raw[section] = {**raw[section], **settings}
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as exc:
        raise MiakitError(format_validation_error(exc)) from exc


def _data_settings(data: Sequence[np.ndarray], root: Path) -> dict[str, Any]:
    """The data settings auditing `data` as the user data kind, written to <root>/data.npz
    (rewritten only when its arrays changed) and checked as the CLI checks such a file."""
    from miakit.data.user import load_user

    if isinstance(data, np.ndarray) or len(data) not in (2, 4):
        raise MiakitError("data must be (x, y) or (x, y, x_test, y_test): arrays of records")
    names = ("x", "y", "x_test", "y_test")[: len(data)]
    arrays = {n: np.asarray(a) for n, a in zip(names, data, strict=True)}
    for name, array in arrays.items():
        if array.dtype == object:
            raise MiakitError(f"data: {name} holds Python objects; give numeric arrays")
    path = (root / DATA_FILE).resolve()
    if path.is_file() and _same_arrays(path, arrays):
        return {"name": "user", "path": str(path), "data_dir": None}
    with tempfile.TemporaryDirectory() as folder:  # checked before the run's file is replaced
        checked = Path(folder) / DATA_FILE
        _save_npz(checked, arrays)
        try:
            load_user(checked)  # the checks of a user's .npz, with their messages
        except MiakitError as exc:
            raise MiakitError(str(exc).replace(str(checked), "data")) from None
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: _save_npz(tmp, arrays))
    return {"name": "user", "path": str(path), "data_dir": None}


def _save_npz(tmp: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def _same_arrays(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    try:
        with np.load(path, allow_pickle=False) as stored:
            return set(stored.files) == set(arrays) and all(
                stored[n].dtype == a.dtype and np.array_equal(stored[n], a)
                for n, a in arrays.items()
            )
    except (OSError, ValueError):
        return False


def _model_settings(model: Any) -> dict[str, Any]:
    """The model settings of an estimator instance (`_estimator_settings`) or a factory
    function (a `memory:` arch, `architectures.register_factory`)."""
    if hasattr(model, "get_params") and hasattr(model, "fit"):
        return _estimator_settings(model)
    if callable(model) and not isinstance(model, type):
        return {"arch": register_factory(model), "estimator": None, "params": {}}
    raise MiakitError(
        f"model must be a scikit-learn estimator instance or a factory(input_shape, "
        f"num_classes) returning a torch.nn.Module, got {model!r}"
    )


def _estimator_settings(estimator: Any) -> dict[str, Any]:
    """model.arch sklearn with the estimator's class and constructor arguments: every model is
    built from them afresh, a copy as `sklearn.base.clone` makes."""
    from miakit.models.sklearn_model import estimator_class

    cls = type(estimator)
    path = _public_path(cls)
    if estimator_class(path) is not cls:
        raise MiakitError(f"model: {path} does not name the class {cls.__qualname__}")
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if key == "random_state":
            continue
        try:
            params[key] = _plain(value)
        except TypeError:
            raise MiakitError(
                f"model: {cls.__name__}'s parameter {key}={value!r} is not a plain value "
                "(number, string, bool, None, or lists and mappings of them), so run.yaml cannot "
                "record it; give it as such (e.g. model.standardize for a scaler)"
            ) from None
    return {"arch": "sklearn", "estimator": path, "params": params}


def _public_path(cls: type) -> str:
    """The shortest import path of `cls` (sklearn.ensemble.RandomForestClassifier, not
    sklearn.ensemble._forest.RandomForestClassifier)."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        module = ".".join(parts[:end])
        try:
            if getattr(importlib.import_module(module), cls.__name__, None) is cls:
                return f"{module}.{cls.__name__}"
        except ImportError:
            continue
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any) -> Any:
    """`value` as YAML's plain values (NumPy scalars as Python's, tuples as lists); TypeError
    for anything else."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)
