"""LOSS attack and the logit transforms against direct float64 computations."""

import math

import numpy as np
import pytest

from miakit.attacks import make_attack
from miakit.signals import Signals, cross_entropy, log_odds

from .synthetic import balanced_keep_matrix


def direct_cross_entropy(z, y):
    return -math.log(math.exp(z[y]) / sum(math.exp(v) for v in z))


@pytest.mark.attack("loss")
@pytest.mark.parametrize("augmentations", [1, 18])
def test_loss_score_is_minus_mean_cross_entropy(augmentations):
    rng = np.random.default_rng(0)
    keep = balanced_keep_matrix(4, 20)
    logits = rng.normal(0, 3, (4, 20, augmentations, 5))
    labels = rng.integers(0, 5, 20)
    signals = Signals.from_arrays(logits, labels, keep)
    got = make_attack("loss").score(signals, 2, [0, 1, 3])
    expected = [
        -np.mean([direct_cross_entropy(logits[2, n, a], labels[n]) for a in range(augmentations)])
        for n in range(20)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.attack("loss")
def test_loss_ignores_reference_models():
    rng = np.random.default_rng(1)
    keep = balanced_keep_matrix(4, 10)
    signals = Signals.from_arrays(rng.normal(size=(4, 10, 1, 3)), rng.integers(0, 3, 10), keep)
    attack = make_attack("loss")
    np.testing.assert_array_equal(
        attack.score(signals, 0, [1]), attack.score(signals, 0, [1, 2, 3])
    )


def test_log_odds_is_stable_where_the_naive_formula_overflows():
    logits = np.array([[[[0.0, 50.0, -3.0]]]])  # p_1 rounds to 1 in float64
    labels = np.array([1])
    naive = np.log(1 / (1 + math.exp(-50) + math.exp(-53)))  # log p_1 ≈ −(e^-50 + e^-53)
    assert naive == 0.0  # the naive log(1 − p) would be log(0)
    # exact: φ = 50 − log(e^0 + e^-3)
    assert log_odds(logits, labels)[0, 0, 0] == pytest.approx(50 - math.log(1 + math.exp(-3)))
    assert cross_entropy(logits, labels)[0, 0, 0] == pytest.approx(
        math.log1p(math.exp(-50) + math.exp(-53)), rel=1e-9
    )


def test_log_odds_matches_probability_form_in_ordinary_range():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3, 7, 2, 4))
    y = rng.integers(0, 4, 7)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    py = np.take_along_axis(p, np.broadcast_to(y[:, None, None], (3, 7, 2, 1)), -1)[..., 0]
    np.testing.assert_allclose(log_odds(z, y), np.log(py) - np.log(1 - py), rtol=1e-10)
