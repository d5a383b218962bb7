"""Temperature scaling: the fitted T is the NLL minimum, and it repairs an overconfident model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from torch import nn

from miakit.defences.temperature import (
    TemperatureScaled,
    apply_temperature,
    fit_temperature,
    temperature_nll,
)
from miakit.errors import MiakitError
from miakit.evaluate.calibration import reliability


def calibrated_then_sharpened(n: int, sharpen: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), so z is calibrated; the model reports sharpen · z."""
    g = np.random.default_rng(seed)
    z = g.normal(0, 1.5, size=(n, 10))
    z[np.arange(n), g.integers(0, 10, n)] += 3.0
    probs = softmax(z, axis=1)
    labels = np.array([g.choice(10, p=p) for p in probs])
    return (sharpen * z).astype(np.float32), labels


def test_fit_matches_brute_force_grid():
    logits, labels = calibrated_then_sharpened(2000, 2.5, seed=0)
    grid = np.exp(np.linspace(-3, 3, 6001))
    nll = np.array([temperature_nll(logits, labels, t) for t in grid])
    best = grid[nll.argmin()]
    fitted = fit_temperature(logits, labels)
    step = grid[1] / grid[0]
    assert best / step <= fitted <= best * step
    assert temperature_nll(logits, labels, fitted) <= nll.min() + 1e-9


def test_recovers_the_sharpening_and_lowers_held_out_ece():
    fit_logits, fit_labels = calibrated_then_sharpened(3000, 4.0, seed=1)
    test_logits, test_labels = calibrated_then_sharpened(3000, 4.0, seed=2)
    t = fit_temperature(fit_logits, fit_labels)
    assert t == pytest.approx(4.0, rel=0.1)
    raw = reliability(softmax(test_logits.astype(np.float64), axis=1), test_labels).ece()
    scaled_logits = apply_temperature(test_logits, t)
    scaled = reliability(softmax(scaled_logits.astype(np.float64), axis=1), test_labels).ece()
    assert raw > 0.1
    assert scaled < raw / 3
    assert (scaled_logits.argmax(1) == test_logits.argmax(1)).all()
    assert scaled_logits.dtype == np.float32


def test_calibrated_logits_keep_temperature_near_one():
    logits, labels = calibrated_then_sharpened(3000, 1.0, seed=3)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)


def test_module_divides_model_output():
    model = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    wrapped = TemperatureScaled(model, 2.0)
    assert torch.allclose(wrapped(x), model(x) / 2.0)
    with pytest.raises(MiakitError):
        TemperatureScaled(model, 0.0)


def test_bad_input_is_refused():
    with pytest.raises(MiakitError, match=r"\[N, C\]"):
        fit_temperature(np.zeros(5), np.zeros(5, int))
    with pytest.raises(MiakitError, match="NaN"):
        fit_temperature(np.full((2, 3), np.nan), np.zeros(2, int))
