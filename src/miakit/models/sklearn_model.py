"""scikit-learn-compatible estimators as the audited models (`model.arch: sklearn`).

`model.estimator` names the class by import path; only the scikit-learn classes of `FITTED_PARTS`
may be named, since a config must not name arbitrary code to run and no other class's saved file
could be loaded. `model.params` are the
constructor's arguments; `random_state` is set from each model's seed wherever the estimator
takes one. Each model is fitted on its keep row (features as float64 [n, D]; images flattened,
scaled to [0, 1]), optionally behind a StandardScaler fitted on the same rows.

Queries go through `predict_proba`, whose columns follow `estimator.classes_`: a class absent from
a model's training records gets probability 0 in the pool's class order. The logits stored are
log-probabilities, log max(p, PROBABILITY_FLOOR): every probability at or above the floor keeps its
exact log (so its order, and LiRA's φ = log p_y − log Σ_{j≠y} p_j), and exact zeros, which trees
and forests give often, become log(1e-30) ≈ −69.1 instead of −∞, so every attack's signals stay
finite (|φ| ≤ 69.1 + log(C − 1)). Only probabilities below 1e-30 tie with 0.

Estimators are saved with skops (`skops.io`), never pickle. A saved file comes from a run that may
have been received from someone else, so loading admits an explicit list of exact types: the class
the run's config names, the fitted parts that class is built of (`FITTED_PARTS`, measured by
fitting each class and listing the types its skops file holds), Pipeline and StandardScaler when
`model.standardize`, and NumPy arrays, dtypes and scalars. Every type the file names (its schema,
and whatever `skops.io.get_untrusted_types` reports) is checked before anything is constructed;
one outside the list stops the load, so a file that asks skops to call a function (e.g.
`numpy.testing.runstring`) runs nothing. Only the classes in `FITTED_PARTS` may be named by
`model.estimator`, since no other class's saved file could be loaded.
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from miakit.architectures import ESTIMATOR_MODULES
from miakit.errors import MiakitError
from miakit.estimators import FITTED_PARTS
from miakit.store import write_atomic

#: Probabilities below this (exact zeros included) are raised to it before the log.
PROBABILITY_FLOOR = 1e-30
#: What `model.standardize` adds around the estimator.
_STANDARDIZE_PARTS = ("sklearn.pipeline.Pipeline", "sklearn.preprocessing._data.StandardScaler")
#: Containers and values any skops file holds: builtins, NumPy arrays, dtypes and scalar types.
_VALUE_TYPES = frozenset(
    {f"builtins.{t}" for t in ("dict", "list", "tuple", "str", "int", "float", "bool")}
    | {"numpy.ndarray", "numpy.dtype"}
    | {f"numpy.{t.__name__}" for t in set(np.sctypeDict.values())}
)


def estimator_class(path: str | None) -> type:
    """The class `model.estimator` names; MiakitError naming model.estimator when the path is
    outside the allowed packages, cannot be imported, is no estimator class, or is not in
    FITTED_PARTS (no saved file of it could be loaded)."""
    if not path or "." not in path:
        raise MiakitError(
            f"model.estimator: give an import path such as "
            f"sklearn.ensemble.RandomForestClassifier, not {path!r}"
        )
    module_path, name = path.rsplit(".", 1)
    if module_path.split(".")[0] not in ESTIMATOR_MODULES:
        raise MiakitError(
            f"model.estimator: {path!r} is outside the allowed packages "
            f"({', '.join(ESTIMATOR_MODULES)}); a config may name only their estimators"
        )
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise MiakitError(f"model.estimator: cannot import {module_path} ({exc})") from exc
    cls = getattr(module, name, None)
    if not inspect.isclass(cls) or not hasattr(cls, "fit"):
        raise MiakitError(f"model.estimator: {module_path} has no estimator class {name!r}")
    if path not in FITTED_PARTS:
        raise MiakitError(
            f"model.estimator: {path!r} is not one of the estimators whose saved files miakit "
            f"can load safely ({', '.join(FITTED_PARTS)})"
        )
    return cls


def new_estimator(path: str, params: dict[str, Any], standardize: bool, seed: int) -> Any:
    """A fresh, unfitted estimator: the class at `path` built with `params`, `random_state` set
    to `seed` (mod 2³²) where it takes one, behind a StandardScaler when `standardize`.

    Raises MiakitError naming the setting for a disallowed class, bad params, a `random_state` in
    params, or an estimator without predict_proba (e.g. SVC without probability=True)."""
    cls = estimator_class(path)
    if "random_state" in params:
        raise MiakitError(
            "model.params.random_state: miakit seeds each model from seed and its index; "
            "remove random_state from model.params"
        )
    try:
        estimator = cls(**params)
        if hasattr(estimator, "_validate_params"):  # scikit-learn's own check, else at fit
            estimator._validate_params()
    except (TypeError, ValueError) as exc:
        raise MiakitError(f"model.params: {path} rejects them: {exc}") from exc
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed % 2**32)
    if not hasattr(estimator, "predict_proba"):
        raise MiakitError(
            f"model.estimator: {path} with these params has no predict_proba; membership "
            "inference needs class probabilities (e.g. SVC needs probability: true)"
        )
    if standardize:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        estimator = make_pipeline(StandardScaler(), estimator)
    return estimator


def features(x: np.ndarray) -> np.ndarray:
    """Records as an estimator takes them: float64 [N, D] (uint8 images flattened, / 255)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return flat / 255.0 if x.dtype == np.uint8 else flat


def fit_estimator(estimator: Any, x: np.ndarray, y: np.ndarray, threads: int) -> float:
    """Fit on records x [n, ...] with labels y [n], native thread pools (BLAS, OpenMP) limited to
    `threads`; returns the seconds it took. Errors of the estimator become MiakitError."""
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    try:
        with threadpool_limits(threads):
            estimator.fit(features(x), y)
    except ValueError as exc:
        raise MiakitError(
            f"model.estimator: fitting {type(estimator).__name__} failed: {exc}"
        ) from exc
    return time.perf_counter() - start


def estimator_logits(estimator: Any, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Log-probabilities used as logits, float32 [N, 1, C] (one query view): predict_proba's
    columns put at the pool's class indices (`classes_`), probabilities below PROBABILITY_FLOOR
    (zeros, and the classes the model never saw) raised to it before the log."""
    proba = np.asarray(estimator.predict_proba(features(x)), dtype=np.float64)
    full = np.zeros((len(x), num_classes))
    full[:, np.asarray(estimator.classes_, dtype=np.int64)] = proba
    return np.log(np.maximum(full, PROBABILITY_FLOOR)).astype(np.float32)[:, None, :]


def save_estimator(path: Path, estimator: Any) -> None:
    """Write the fitted estimator with skops, atomically."""
    import skops.io

    write_atomic(path, lambda tmp: skops.io.dump(estimator, tmp))


def allowed_types(path: str, standardize: bool) -> frozenset[str]:
    """The exact type names a saved estimator of class `path` (behind a StandardScaler when
    `standardize`) may hold; MiakitError naming model.estimator for a class not in FITTED_PARTS."""
    if path not in FITTED_PARTS:
        estimator_class(path)  # its error names the setting
    extra = _STANDARDIZE_PARTS if standardize else ()
    return _VALUE_TYPES | set(FITTED_PARTS[path]) | set(extra)


def _schema_types(node: Any, found: set[str]) -> set[str]:
    """Every `module.class` a skops schema (parsed JSON, nothing constructed) names."""
    if isinstance(node, dict):
        module, name = node.get("__module__"), node.get("__class__")
        if isinstance(module, str) and isinstance(name, str):
            found.add(f"{module}.{name}")
        for value in node.values():
            _schema_types(value, found)
    elif isinstance(node, list):
        for value in node:
            _schema_types(value, found)
    return found


def load_estimator(path: Path, estimator: str, standardize: bool) -> Any:
    """A fitted estimator saved by `save_estimator` for a run whose config names class
    `estimator` (and `standardize`). Every type the file names, in its schema and as
    `skops.io.get_untrusted_types` reports them, is checked against `allowed_types` before
    anything is built; MiakitError naming the file and the first type outside it, or for a
    missing or unreadable file."""
    import skops.io

    if not path.is_file():
        raise MiakitError(f"missing file {path}; `miakit train` retrains the model")
    allowed = allowed_types(estimator, standardize)
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
        asked = _schema_types(schema, set())
        _refuse_foreign(path, estimator, asked - allowed)  # before skops reads the tree
        asked |= set(skops.io.get_untrusted_types(file=path))
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise MiakitError(
            f"{path} is not a skops file miakit wrote ({exc}); delete it and retrain"
        ) from exc
    _refuse_foreign(path, estimator, asked - allowed)
    return skops.io.load(path, trusted=sorted(asked))


def _refuse_foreign(path: Path, estimator: str, foreign: set[str]) -> None:
    if foreign:
        first, *rest = sorted(foreign)
        more = f" (and {len(rest)} more: {', '.join(rest)})" if rest else ""
        raise MiakitError(
            f"{path} asks for type {first}{more}, which a {estimator} saved by miakit never "
            "holds; the file was not written by miakit and is not loaded: delete it and retrain"
        )
