"""Threshold attacks of the confidence-score study against brute-force searches written here."""

import math

import numpy as np
import pytest

from miakit.attacks import make_attack
from miakit.attacks.threshold import threshold_report
from miakit.errors import MiakitError
from miakit.signals import Signals

from .attack_inputs import direct_softmax, random_signals


def mean_signal(logits, model, kind):
    out = []
    for n in range(logits.shape[1]):
        values = []
        for z in logits[model, n]:
            p = direct_softmax(z)
            values.append(max(p) if kind == "max" else -sum(v * math.log(v) for v in p))
        out.append(np.mean(values))
    return np.array(out)


def best_score_threshold(scores, members):
    """Every distinct score (and +∞) as a threshold of `score ≥ t`; the first best TPR − FPR."""
    best, best_gain = math.inf, 0.0
    for t in sorted(set(scores), reverse=True):
        gain = np.mean(scores[members] >= t) - np.mean(scores[~members] >= t)
        if gain > best_gain:
            best, best_gain = t, gain
    return best


def best_entropy_threshold(entropy, members, grid):
    """The study's loop: the first θ of the grid with the most correct decisions."""
    best, best_correct = 0.0, 0
    for theta in np.linspace(entropy.min(), entropy.max(), grid):
        correct = (entropy[~members] >= theta).sum() + (entropy[members] < theta).sum()
        if correct > best_correct:
            best, best_correct = theta, correct
    return best


@pytest.mark.attack("threshold-confidence")
@pytest.mark.parametrize("augmentations", [1, 18])
def test_confidence_threshold_from_shadow_applied_to_target(augmentations):
    signals, logits, _, keep = random_signals(augmentations=augmentations, member_boost=3)
    got = make_attack("threshold-confidence", {"shadow": 1}).score(signals, 0, [1, 3, 4])
    shadow = mean_signal(logits, 3, "max")
    threshold = best_score_threshold(shadow, keep[3])
    target = mean_signal(logits, 0, "max")
    np.testing.assert_array_equal(got, (target >= threshold).astype(float))


@pytest.mark.attack("threshold-confidence")
def test_strict_comparison_reproduces_the_code_on_saturated_scores():
    _, logits, labels, keep = random_signals(models=3, records=30, seed=2)
    logits[:, :, :, 0] += np.where(keep, 200.0, 0.0)[..., None]  # members: max prob == 1.0
    signals = Signals.from_arrays(logits, labels, keep)
    paper = make_attack("threshold-confidence").score(signals, 0, [1])
    code = make_attack("threshold-confidence", {"comparison": ">"}).score(signals, 0, [1])
    np.testing.assert_array_equal(paper, keep[0].astype(float))  # threshold 1.0, ties included
    assert code.sum() == 0


@pytest.mark.attack("threshold-entropy")
@pytest.mark.parametrize("augmentations", [1, 18])
def test_entropy_threshold_grid(augmentations):
    signals, logits, _, keep = random_signals(augmentations=augmentations, member_boost=3)
    got = make_attack("threshold-entropy", {"grid": 500}).score(signals, 2, [0, 1])
    theta = best_entropy_threshold(mean_signal(logits, 0, "entropy"), keep[0], 500)
    np.testing.assert_array_equal(got, (mean_signal(logits, 2, "entropy") < theta).astype(float))


@pytest.mark.attack("threshold-confidence")
@pytest.mark.attack("threshold-entropy")
def test_shadow_must_exist_and_have_both_sides():
    signals, _, _, _ = random_signals()
    with pytest.raises(MiakitError, match="only 2"):
        make_attack("threshold-entropy", {"shadow": 2}).score(signals, 0, [1, 2])
    _, logits, labels, keep = random_signals(models=3)
    keep = keep.copy()
    keep[1] = True
    keep[2] = False
    with pytest.raises(MiakitError, match="both IN and OUT"):
        make_attack("threshold-confidence").score(Signals.from_arrays(logits, labels, keep), 0, [1])


def test_report_figures():
    predicted = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    members = np.array([1, 1, 0, 1, 0, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.7, 0.8, 0.6, 0.5, 0.3, 0.4])
    report = threshold_report(predicted, members, scores)
    assert report.precision == pytest.approx(2 / 3)
    assert report.recall == pytest.approx(2 / 3)
    assert report.fpr == pytest.approx(1 / 4)
    assert report.mmps == pytest.approx({"tp": 0.8, "fp": 0.8, "tn": 0.4, "fn": 0.6})
    empty = threshold_report(np.zeros(3, bool), np.array([1, 0, 0], bool), np.ones(3))
    assert empty.precision == 0.0 and math.isnan(empty.mmps["tp"])
