"""Confidence, entropy and modified entropy against textbook formulas in float64 loops."""

import math

import numpy as np
import pytest

from miakit.attacks import make_attack
from miakit.errors import MiakitError
from miakit.signals import Signals, modified_entropy, sorted_probs

from .attack_inputs import direct_softmax, nan_signals, random_signals


def direct_scores(name, logits, labels, target):
    out = []
    for n in range(logits.shape[1]):
        values = []
        for z in logits[target, n]:
            p = direct_softmax(z)
            y = labels[n]
            if name == "confidence":
                values.append(max(p))
            elif name == "entropy":
                values.append(sum(v * math.log(v) for v in p))
            else:
                mentr = -(1 - p[y]) * math.log(p[y]) - sum(
                    v * math.log(1 - v) for i, v in enumerate(p) if i != y
                )
                values.append(-mentr)
        out.append(np.mean(values))
    return np.array(out)


@pytest.mark.attack("confidence")
@pytest.mark.attack("entropy")
@pytest.mark.attack("modified-entropy")
@pytest.mark.parametrize("name", ["confidence", "entropy", "modified-entropy"])
@pytest.mark.parametrize("augmentations", [1, 18])
def test_scores_match_textbook_formulas(name, augmentations):
    signals, logits, labels, _ = random_signals(augmentations=augmentations)
    got = make_attack(name).score(signals, 2, [0, 1])
    np.testing.assert_allclose(got, direct_scores(name, logits, labels, 2), rtol=1e-10)


@pytest.mark.attack("modified-entropy")
def test_modified_entropy_stays_finite_where_probabilities_round_to_one():
    logits = np.array([[[[0.0, 60.0, -3.0]]]])
    # true class 1, p_1 ≈ 1: Mentr ≈ 0. True class 0: −log p_0 ≈ 60, and p_1 ≈ 1 with
    # log(1 − p_1) = log(1 + e^−3) − 60 up to e^−60, where the naive log(1 − p_1) is log(0)
    right, wrong = modified_entropy(logits, np.array([1])), modified_entropy(logits, np.array([0]))
    assert right[0, 0, 0] == pytest.approx(0.0, abs=1e-20)
    exact = 60 + 60 - math.log(1 + math.exp(-3))
    assert wrong[0, 0, 0] == pytest.approx(exact, rel=1e-12)


@pytest.mark.attack("confidence")
@pytest.mark.attack("entropy")
def test_ties_and_reference_independence():
    _, logits, labels, keep = random_signals(seed=1)
    logits[:, 5] = logits[:, 4]
    labels[5] = labels[4]
    tied = Signals.from_arrays(logits, labels, keep)
    for name in ("confidence", "entropy"):
        attack = make_attack(name)
        scores = attack.score(tied, 0, [1])
        assert scores[4] == scores[5]
        np.testing.assert_array_equal(scores, attack.score(tied, 0, [1, 2, 3]))


@pytest.mark.attack("confidence")
@pytest.mark.attack("entropy")
@pytest.mark.attack("modified-entropy")
def test_nan_and_bad_shapes_are_clear_errors():
    signals, logits, labels, keep = random_signals(seed=2)
    for name in ("confidence", "entropy", "modified-entropy"):
        with pytest.raises(MiakitError, match="NaN"):
            make_attack(name).score(nan_signals(signals, 0, 3), 0, [])
    with pytest.raises(MiakitError, match=r"\[N, A, C\]"):
        Signals(list(logits[:, :, 0]), labels, keep)  # a missing augmentation axis


def test_sorted_probs_feature():
    z = np.array([[[[1.0, 3.0, 2.0, 0.0]]]])
    expected = sorted(direct_softmax(z[0, 0, 0]), reverse=True)[:3]
    np.testing.assert_allclose(sorted_probs(z, 3)[0, 0, 0], expected, rtol=1e-12)
