"""Label-only attacks (Choquette-Choo et al., ICML 2021) against loops written here: the gap attack
(1 where the target labels the record as it is correctly) and the augmentation attack (the share
of query views labelled correctly); both read only the predicted class, so they score alike on
every `query.output` that keeps the argmax, and run on `label`."""

from __future__ import annotations

import numpy as np
import pytest

from miakit.attacks import make_attack
from miakit.signals import Signals

from .synthetic import balanced_keep_matrix

#: A → the index of the unshifted, unflipped view, written out from the LiRA code's order
#: (flip outer, then dy, dx over 0..2s): the centre crop of the unflipped image.
IDENTITY = {1: 0, 2: 0, 18: 4, 50: 12}


def signals_with(augmentations: int, output: str = "logits", seed: int = 0) -> Signals:
    rng = np.random.default_rng(seed)
    models, records, classes = 4, 50, 3
    keep = balanced_keep_matrix(models, records, seed)
    labels = rng.integers(0, classes, records)
    logits = rng.normal(0, 1, (models, records, augmentations, classes))
    logits[np.arange(models)[:, None], np.arange(records), :, labels] += np.where(keep, 1.0, 0.0)[
        ..., None
    ]
    return Signals.from_arrays(logits, labels, keep, output=output)


def correct_by_loop(signals: Signals, target: int, view: int) -> bool | list[bool]:
    logits = np.asarray(signals.logits[target])
    out = []
    for n in range(signals.num_records):
        z = list(logits[n, view])
        out.append(z.index(max(z)) == signals.labels[n])
    return out


@pytest.mark.attack("gap")
@pytest.mark.parametrize("augmentations", [1, 2, 18, 50])
def test_gap_is_one_where_the_record_as_it_is_is_labelled_correctly(augmentations):
    signals = signals_with(augmentations)
    for target in (0, 2):
        expected = correct_by_loop(signals, target, IDENTITY[augmentations])
        scores = make_attack("gap").score(signals, target, [])
        np.testing.assert_array_equal(scores, np.array(expected, dtype=float))


@pytest.mark.attack("label-augmentation")
@pytest.mark.parametrize("augmentations", [2, 18])
def test_augmentation_attack_is_the_share_of_views_labelled_correctly(augmentations):
    signals = signals_with(augmentations, seed=1)
    target = 1
    per_view = [correct_by_loop(signals, target, v) for v in range(augmentations)]
    expected = [sum(v[n] for v in per_view) / augmentations for n in range(signals.num_records)]
    scores = make_attack("label-augmentation").score(signals, target, [])
    np.testing.assert_allclose(scores, expected, rtol=1e-15)


@pytest.mark.attack("gap")
@pytest.mark.attack("label-augmentation")
@pytest.mark.parametrize("name", ["gap", "label-augmentation"])
@pytest.mark.parametrize("output", ["probabilities", "top-k:1", "label"])
def test_label_only_attacks_score_the_same_on_outputs_that_keep_the_argmax(name, output):
    full = signals_with(18, seed=2)
    restricted = signals_with(18, output=output, seed=2)
    attack = make_attack(name)
    assert attack.unavailable(restricted) is None
    np.testing.assert_array_equal(
        attack.score_leave_one_out(full, [0, 3]), attack.score_leave_one_out(restricted, [0, 3])
    )


@pytest.mark.attack("gap")
def test_gap_reads_the_class_the_rounded_output_shows():
    """rounded:1 can tie the top classes: the API shows a tie and argmax takes the first."""
    logits = np.array([[[[2.0, 2.05, -5.0]]], [[[0.0, 3.0, 0.0]]]])  # [M=2, N=1, A=1, C=3]
    keep = np.array([[True], [False]])
    labels = np.array([1])
    exact = Signals.from_arrays(logits, labels, keep)
    rounded = Signals.from_arrays(logits, labels, keep, output="rounded:1")
    assert make_attack("gap").score(exact, 0, [1])[0] == 1.0
    assert make_attack("gap").score(rounded, 0, [1])[0] == 0.0  # 0.5 and 0.5: class 0 first


@pytest.mark.attack("label-augmentation")
def test_augmentation_attack_is_skipped_with_one_view_and_says_why():
    reason = make_attack("label-augmentation").unavailable(signals_with(1))
    assert reason is not None and "query.augmentations" in reason


@pytest.mark.attack("gap")
def test_gap_is_skipped_where_the_views_follow_no_known_layout():
    reason = make_attack("gap").unavailable(signals_with(3))
    assert reason is not None and "A=3" in reason
