"""Attack-R and Attack-P against per-record loops with np.interp, scipy's normal and direct counts."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from miakit.attacks import make_attack
from miakit.errors import MiakitError

from .attack_inputs import chosen_references, direct_softmax, nan_signals, random_signals


def losses_and_log_odds(logits, labels):
    models, records, augs, _ = logits.shape
    loss = np.zeros((models, records, augs))
    phi = np.zeros((models, records, augs))
    for m, n, a in np.ndindex(models, records, augs):
        p = direct_softmax(logits[m, n, a])[labels[n]]
        loss[m, n, a] = -math.log(p)
        phi[m, n, a] = math.log(p) - math.log(1 - p)
    return loss, phi


def expected_attack_r(
    logits, labels, keep, target, design, threshold, pool=None, counts="equal"
):  # fmt: skip
    """In loops, against the reference models of `design` but the target (`chosen_references`);
    the spread of all OUT φ is over the first `pool` records (None: all), and the records after
    them, query-only records, are fitted on every reference (all are OUT for them)."""
    loss, phi = losses_and_log_odds(logits, labels)
    refs = [m for m in design if m != target]
    all_out = np.concatenate([phi[r, :pool][~keep[r, :pool]].ravel() for r in refs])
    scores = []
    for n in range(keep.shape[1]):
        query = pool is not None and n >= pool
        out = chosen_references(keep, n, target, design, ("OUT",), "all" if query else counts)
        out = out["OUT"]
        alphas = []
        for a in range(logits.shape[2]):
            ends = np.sort(np.concatenate([[loss[r, n, a] for r in out], [0.0, 1000.0]]))
            linear = np.interp(loss[target, n, a], ends, np.linspace(0, 1, len(ends)))
            values = np.array([phi[r, n, a] for r in out])
            sd = values.std() if len(values) > 1 and values.std() > 0 else all_out.std()
            gauss = norm.sf(phi[target, n, a], values.mean(), sd)
            alphas.append(
                {"linear_itp": linear, "logit_rescale": gauss, "min": max(linear, gauss),
                 "mean": (linear + gauss) / 2}[threshold]
            )  # fmt: skip
        scores.append(-np.mean(alphas))
    return np.array(scores)


@pytest.mark.attack("attack-r")
@pytest.mark.parametrize("threshold", ["linear_itp", "logit_rescale", "min", "mean"])
@pytest.mark.parametrize("augmentations", [1, 18])
def test_attack_r_matches_per_record_loops(threshold, augmentations):
    signals, logits, labels, keep = random_signals(augmentations=augmentations)
    refs = [1, 2, 3, 4, 5]
    got = make_attack("attack-r", {"threshold": threshold}).score(signals, 0, refs)
    expected = expected_attack_r(logits, labels, keep, 0, refs, threshold)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.attack("attack-r")
def test_attack_r_with_tied_losses_and_one_out_reference():
    signals, logits, labels, keep = random_signals(models=4, records=30, seed=2)
    logits = np.round(logits)  # identical logit vectors → tied losses
    logits[2] = logits[1]
    tied = type(signals).from_arrays(logits, labels, keep)
    for threshold in ("linear_itp", "logit_rescale"):
        got = make_attack("attack-r", {"threshold": threshold}).score(tied, 0, [1, 2, 3])
        expected = expected_attack_r(logits, labels, keep, 0, [1, 2, 3], threshold)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.attack("attack-r")
def test_attack_r_errors():
    signals, _, _, _ = random_signals(seed=3)
    with pytest.raises(MiakitError, match="NaN"):
        make_attack("attack-r").score(nan_signals(signals, 1, 0), 0, [1, 2])
    with pytest.raises(MiakitError, match="OUT reference"):
        make_attack("attack-r").score(signals, 0, [1])  # model 1 alone is IN on some records
    with pytest.raises(MiakitError, match="threshold"):
        make_attack("attack-r", {"threshold": "median"})


def expected_attack_p(logits, labels, keep, target):
    loss, _ = losses_and_log_odds(logits, labels)
    population = np.flatnonzero(~keep[target])
    scores = []
    for n in range(keep.shape[1]):
        zs = list(population)  # x against itself too, as the RMIA code
        alphas = [np.mean([loss[target, z, a] < loss[target, n, a] for z in zs])
                  for a in range(logits.shape[2])]  # fmt: skip
        scores.append(-np.mean(alphas))
    return np.array(scores)


@pytest.mark.attack("attack-p")
@pytest.mark.parametrize("augmentations", [1, 18])
def test_attack_p_matches_direct_counts(augmentations):
    signals, logits, labels, keep = random_signals(augmentations=augmentations, seed=4)
    logits[:, 20:], labels[20:] = logits[:, :20], labels[:20]  # records 20.. tie with 0..
    tied = type(signals).from_arrays(logits, labels, keep)
    attack = make_attack("attack-p")
    got = attack.score(tied, 3, [])
    expected = expected_attack_p(logits, labels, keep, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.attack("attack-p")
def test_attack_p_ignores_references_and_rejects_nan():
    signals, _, _, _ = random_signals(seed=5)
    attack = make_attack("attack-p")
    np.testing.assert_array_equal(attack.score(signals, 0, []), attack.score(signals, 0, [1, 2]))
    with pytest.raises(MiakitError, match="NaN"):
        attack.score(nan_signals(signals, 0, 7), 0, [])
