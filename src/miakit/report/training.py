"""How a run's models were trained and defended, from their meta.json files: the privacy/utility
figures a report and a comparison put next to the attacks (test accuracy, ECE, ε of DP-SGD, the
fitted calibration, transfer learning)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from miakit.report.runs import RunData


def model_table(data: RunData) -> pd.DataFrame:
    """One row per model that has a meta.json: training time, held-out accuracy, DP-SGD's
    spent ε and δ, the fitted temperature or Laplace prior precision, and the transfer extractor."""
    rows = []
    for m in range(data.keep.shape[0]):
        meta = data.run.read_meta(m)
        if meta is None:
            continue
        dp = meta.get("dp") or {}
        calibration = meta.get("calibration") or {}
        transfer = meta.get("transfer") or {}
        rows.append(
            {
                "model": m,
                "target": m in data.targets,
                "train_seconds": meta.get("train_seconds"),
                "test_accuracy": meta.get("test_accuracy"),
                "accuracy_in": meta.get("accuracy_in"),
                "accuracy_out": meta.get("accuracy_out"),
                "epsilon": dp.get("epsilon"),
                "delta": dp.get("delta"),
                "noise_multiplier": dp.get("noise_multiplier"),
                "temperature": calibration.get("temperature"),
                "laplace_prior_precision": calibration.get("laplace_prior_precision"),
                "extractor": transfer.get("arch"),
            }
        )
    return pd.DataFrame(rows)


def _mean(frame: pd.DataFrame, column: str) -> float | None:
    if column not in frame or frame[column].isna().all():
        return None
    return float(frame[column].astype(float).mean())


def privacy_utility(
    data: RunData, models: pd.DataFrame | None = None
) -> dict[str, float | str | None]:
    """The targets' figures that decide whether a defence is worth it, None where unknown:
    train/test accuracy and ECE from their logits (non-members as test), held-out test accuracy,
    ε (the largest any target spent), and which defences were applied. `models`: the run's
    model_table, when the caller has read it already."""
    models = model_table(data) if models is None else models
    targets = models[models["target"]] if len(models) else models
    figures: dict[str, float | str | None] = {
        "defences": defences_applied(models),
        "test_accuracy": _mean(targets, "test_accuracy"),
        "epsilon": (
            float(targets["epsilon"].astype(float).max())
            if "epsilon" in targets and targets["epsilon"].notna().any()
            else None
        ),
    }
    if data.calibration is not None:
        for column in ("train_accuracy", "test_accuracy", "test_ece", "test_overconfidence"):
            figures[f"pool_{column}"] = float(np.nanmean(data.calibration[column]))
    return figures


def defences_applied(models: pd.DataFrame) -> str:
    """A short description, e.g. "DP-SGD (σ = 1), temperature scaling", or "none"."""
    if models.empty:
        return "unknown (no meta.json)"
    parts = []
    if "epsilon" in models and models["epsilon"].notna().any():
        sigma = models["noise_multiplier"].dropna().astype(float)
        parts.append(f"DP-SGD (σ = {sigma.iloc[0]:.3g})")
    if models["temperature"].notna().any():
        parts.append("temperature scaling")
    if models["laplace_prior_precision"].notna().any():
        parts.append("last-layer Laplace")
    if models["extractor"].notna().any():
        parts.append(f"transfer learning ({models['extractor'].dropna().iloc[0]} features)")
    return ", ".join(parts) or "none"
