"""scikit-learn-compatible estimators as the audited models (`model.arch: sklearn`).

`model.estimator` names the class by import path; only classes under the packages in
`miakit.architectures.ESTIMATOR_MODULES` (scikit-learn, and xgboost or lightgbm where installed)
may be named, since a config must not name arbitrary code to run. `model.params` are the
constructor's arguments; `random_state` is set from each model's seed wherever the estimator
takes one. Each model is fitted on its keep row (features as float64 [n, D]; images flattened,
scaled to [0, 1]), optionally behind a StandardScaler fitted on the same rows.

Queries go through `predict_proba`, whose columns follow `estimator.classes_`: a class absent from
a model's training records gets probability 0 in the pool's class order. The logits stored are
log-probabilities, log max(p, PROBABILITY_FLOOR): every probability at or above the floor keeps its
exact log (so its order, and LiRA's φ = log p_y − log Σ_{j≠y} p_j), and exact zeros, which trees
and forests give often, become log(1e-30) ≈ −69.1 instead of −∞, so every attack's signals stay
finite (|φ| ≤ 69.1 + log(C − 1)). Only probabilities below 1e-30 tie with 0.

Estimators are saved with skops (`skops.io`), never pickle: loading a file instantiates only types
of the allow-listed packages (and NumPy), so no file of a run executes code when it is loaded.
"""

from __future__ import annotations

import importlib
import inspect
import time
from pathlib import Path
from typing import Any

import numpy as np

from miakit.architectures import ESTIMATOR_MODULES
from miakit.errors import MiakitError
from miakit.store import write_atomic

#: Probabilities below this (exact zeros included) are raised to it before the log.
PROBABILITY_FLOOR = 1e-30
#: What skops may instantiate when it loads a saved estimator: types of these packages only.
TRUSTED_PACKAGES = (*ESTIMATOR_MODULES, "numpy")


def estimator_class(path: str | None) -> type:
    """The class `model.estimator` names; MiakitError naming model.estimator when the path is
    outside the allow-list, cannot be imported, or is no classifier with predict_proba."""
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


def load_estimator(path: Path) -> Any:
    """A fitted estimator saved by `save_estimator`. The types the file asks for are checked
    before anything is built: any outside TRUSTED_PACKAGES is a MiakitError naming them."""
    import skops.io

    if not path.is_file():
        raise MiakitError(f"missing file {path}; `miakit train` retrains the model")
    asked = skops.io.get_untrusted_types(file=path)
    foreign = [t for t in asked if t.split(".")[0] not in TRUSTED_PACKAGES]
    if foreign:
        raise MiakitError(
            f"{path} asks for types outside {', '.join(TRUSTED_PACKAGES)} ({', '.join(foreign)}); "
            "it was not written by miakit: delete it and retrain"
        )
    return skops.io.load(path, trusted=asked)
