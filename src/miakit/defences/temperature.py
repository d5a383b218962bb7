"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

One scalar T > 0 divides every logit; T is fitted on held-out records by minimizing the negative
log-likelihood. It keeps the argmax (accuracy) and changes confidences, which is what confidence-
and loss-based membership attacks read. NLL(z / T) is convex in 1/T, hence unimodal in log T, so a
bounded scalar search on log T finds the global minimum; everything runs in float64.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import Tensor, nn

from miakit.errors import MiakitError

#: log T is searched in [−LOG_BOUND, LOG_BOUND], i.e. T in [e^-7, e^7] ≈ [0.001, 1100]
LOG_BOUND = 7.0


def temperature_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of integer labels [N] under softmax(logits [N, C] / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return float(-log_softmax(z, axis=1)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimizing held-out NLL; `logits` [N, C] and `labels` [N] of records not trained on."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise MiakitError(
            f"temperature scaling needs held-out logits [N, C] and labels [N], got "
            f"{logits.shape} and {labels.shape}"
        )
    if not np.isfinite(logits).all():
        raise MiakitError("temperature scaling: the held-out logits contain NaN or inf")
    result = minimize_scalar(
        lambda log_t: temperature_nll(logits, labels, float(np.exp(log_t))),
        bounds=(-LOG_BOUND, LOG_BOUND),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Logits divided by T, in the input's dtype (float32 logits stay float32)."""
    logits = np.asarray(logits)
    return (logits.astype(np.float64) / temperature).astype(logits.dtype)


class TemperatureScaled(nn.Module):
    """`model` whose outputs are divided by T: a drop-in replacement wherever logits are queried."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise MiakitError(f"temperature must be > 0, got {temperature}")
        self.model, self.temperature = model, float(temperature)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) / self.temperature


def temperature_scaled(model: nn.Module, logits: np.ndarray, labels: np.ndarray) -> nn.Module:
    """`model` wrapped with the temperature fitted on its held-out `logits` and `labels`."""
    return TemperatureScaled(model, fit_temperature(logits, labels))


__all__ = [
    "TemperatureScaled",
    "apply_temperature",
    "fit_temperature",
    "temperature_nll",
    "temperature_scaled",
]
