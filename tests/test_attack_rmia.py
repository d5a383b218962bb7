"""RMIA against a pairwise brute force written here, with scipy's trimmed mean and direct formulas."""

import math

import numpy as np
import pytest
from scipy.stats import trim_mean
from sklearn.metrics import roc_auc_score

from miakit.attacks import make_attack
from miakit.attacks.rmia import relative_scores
from miakit.errors import MiakitError
from miakit.signals import Signals, taylor_soft_margin

from .attack_inputs import direct_softmax, nan_signals, random_signals

pytestmark = [pytest.mark.attack("rmia"), pytest.mark.attack("rmia-offline")]


def pairwise(ratio, population, gamma):
    """Per x: the share of z whose pair passes ratio[x]/ratio[z] > γ in more than half the queries
    (x meets itself too when it is in the population, as in the RMIA code)."""
    num_aug = ratio.shape[1]
    out = []
    for x in range(len(ratio)):
        zs = list(population)
        with np.errstate(divide="ignore", invalid="ignore"):
            votes = [(ratio[x] / ratio[z] > gamma).sum() > num_aug / 2 for z in zs]
        out.append(sum(votes) / len(zs))
    return np.array(out)


def direct_taylor_soft_margin(z, y, temperature=2.0, margin=0.6, order=4):
    def taylor(v):
        return sum(v**i / math.factorial(i) for i in range(order + 1))

    terms = [taylor(v / temperature - (margin if j == y else 0.0)) for j, v in enumerate(z)]
    return terms[y] / sum(terms)


def brute_force(
    logits, labels, keep, target, refs, offline_a=None, gamma=2.0, signal="taylor", population=None
):
    """The paper's RMIA in loops: trimmed mean p(x), ratios, pairwise majority votes; Z is the
    target's non-members unless `population` names it."""
    models, records, augs, _ = logits.shape
    s = np.zeros((models, records, augs))
    for m, n, a in np.ndindex(models, records, augs):
        z, y = logits[m, n, a], labels[n]
        s[m, n, a] = (
            direct_taylor_soft_margin(z, y) if signal == "taylor" else direct_softmax(z / 2.0)[y]
        )
    p = np.zeros((records, augs))
    for n, a in np.ndindex(records, augs):
        use = [r for r in refs if offline_a is None or not keep[r, n]]
        p[n, a] = trim_mean([s[r, n, a] for r in use], 0.2)
        if offline_a is not None:
            p[n, a] = (1 + offline_a) / 2 * p[n, a] + (1 - offline_a) / 2
    z = np.flatnonzero(~keep[target]) if population is None else population
    return pairwise(s[target] / p, z, gamma)


@pytest.mark.parametrize("offline", [False, True])
def test_query_only_records_are_scored_against_the_pools_population(offline):
    """Out-of-distribution queries: p(x) from all references (they are OUT everywhere), and Z
    the target's non-members among the pool records only."""
    signals, logits, labels, keep = random_signals(models=6, records=30, augmentations=2)
    rng = np.random.default_rng(3)
    q_logits, q_labels = rng.normal(0, 3, (6, 7, 2, 4)), rng.integers(0, 4, 7)
    extended = signals.with_queries(list(q_logits), q_labels)
    name, options = ("rmia-offline", {"offline_a": 0.3}) if offline else ("rmia", {})
    got = make_attack(name, options).score(extended, 0, [1, 2, 3, 4, 5])
    all_logits = np.concatenate([logits, q_logits], axis=1)
    all_keep = np.concatenate([keep, np.zeros((6, 7), bool)], axis=1)
    expected = brute_force(
        all_logits, np.r_[labels, q_labels], all_keep, 0, [1, 2, 3, 4, 5],
        offline_a=0.3 if offline else None, population=np.flatnonzero(~keep[0]),
    )  # fmt: skip
    np.testing.assert_allclose(got, expected)


@pytest.mark.parametrize("augmentations", [1, 2, 3, 18])
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_counting_equals_pairwise_brute_force_with_ties(augmentations, gamma):
    rng = np.random.default_rng(augmentations)
    ratio = rng.lognormal(0, 0.7, (150, augmentations))
    ratio[:60] = np.round(ratio[:60], 1)  # many exact ties, and zeros (signal underflow)
    ratio[60:70] = ratio[0]  # x with the same ratios as a population record
    population = np.sort(rng.choice(150, 70, replace=False))
    got = relative_scores(ratio, ratio[population], gamma)
    np.testing.assert_array_equal(got, pairwise(ratio, population, gamma))


@pytest.mark.parametrize("augmentations", [1, 2, 4, 5, 7, 8, 17, 18])
def test_counting_at_every_majority_threshold_equals_brute_force(augmentations):
    """Every majority threshold from A = 1 to 18, most records in the population."""
    rng = np.random.default_rng(100 + augmentations)
    ratio = rng.lognormal(0, 0.5, (120, augmentations))
    ratio[:40] = np.round(ratio[:40], 1)
    population = np.sort(rng.choice(120, 111, replace=False))
    got = relative_scores(ratio, ratio[population], 1.3)
    np.testing.assert_array_equal(got, pairwise(ratio, population, 1.3))


@pytest.mark.parametrize("augmentations", [3, 18])
def test_counting_where_the_rank_bounds_decide_most_pairs(augmentations):
    """Augmentations that agree closely (as on real data): most z are decided by the two rank
    bounds of `majority_vote` without being looked at, some only by the vote itself."""
    rng = np.random.default_rng(augmentations)
    base = rng.lognormal(0, 1.0, 300)
    ratio = base[:, None] * rng.lognormal(0, 0.05, (300, augmentations))
    population = np.sort(rng.choice(300, 200, replace=False))
    got = relative_scores(ratio, ratio[population], 1.5)
    np.testing.assert_array_equal(got, pairwise(ratio, population, 1.5))
    assert 0 < got.mean() < 1


def test_counting_with_a_population_beyond_16_bit_ranks():
    """|Z| ≥ 65,535 ranks do not fit 16 bits: the counting switches to 32-bit ranks."""
    rng = np.random.default_rng(7)
    ratio = rng.lognormal(0, 0.5, (70_000, 3))
    population = np.arange(70_000)
    x = np.r_[0:40, 69_960:70_000]
    got = relative_scores(ratio[x], ratio[population], 1.2)
    expected = [((ratio[i] / ratio[population] > 1.2).sum(axis=1) > 1.5).mean() for i in x]
    np.testing.assert_array_equal(got, expected)


def test_counting_is_exact_at_rounding_boundaries():
    """ratio_x / γ lands between floats: the binary search must agree with the division test."""
    ratio = np.array([[0.3], [0.1], [0.1 + 1e-17], [0.15], [0.6], [0.3 / 3]])
    population = np.arange(6)
    np.testing.assert_array_equal(
        relative_scores(ratio, ratio[population], 3.0), pairwise(ratio, population, 3.0)
    )


@pytest.mark.parametrize("augmentations", [1, 18])
def test_online_matches_brute_force(augmentations):
    signals, logits, labels, keep = random_signals(augmentations=augmentations)
    refs = [1, 2, 3, 4, 5]
    got = make_attack("rmia").score(signals, 0, refs)
    np.testing.assert_array_equal(got, brute_force(logits, labels, keep, 0, refs))


@pytest.mark.parametrize("augmentations", [1, 18])
def test_offline_matches_brute_force(augmentations):
    signals, logits, labels, keep = random_signals(augmentations=augmentations, seed=3)
    refs = [0, 1, 3, 4, 5]
    got = make_attack("rmia-offline").score(signals, 2, refs)
    np.testing.assert_array_equal(got, brute_force(logits, labels, keep, 2, refs, offline_a=0.3))


def test_softmax_signal_option():
    signals, logits, labels, keep = random_signals(augmentations=2, seed=4)
    got = make_attack("rmia", {"signal": "softmax"}).score(signals, 1, [0, 2, 3, 4, 5])
    expected = brute_force(logits, labels, keep, 1, [0, 2, 3, 4, 5], signal="softmax")
    np.testing.assert_array_equal(got, expected)


def test_record_with_one_out_reference_offline():
    """Offline p(x) from a single OUT model: the trimmed mean of one value is that value."""
    signals, logits, labels, keep = random_signals(models=4, seed=5)
    refs = [1, 2, 3]  # each record is IN for 2 of 4 models: 1 or 2 OUT references here
    got = make_attack("rmia-offline", {"offline_a": 0.5}).score(signals, 0, refs)
    np.testing.assert_array_equal(got, brute_force(logits, labels, keep, 0, refs, offline_a=0.5))


def test_population_options():
    signals, _, _, keep = random_signals(seed=6)
    refs = [1, 2, 3, 4, 5]
    plain = make_attack("rmia").score(signals, 0, refs)
    z = np.flatnonzero(~keep[0])
    listed = make_attack("rmia", {"population": z.tolist()}).score(signals, 0, refs)
    np.testing.assert_array_equal(listed, plain)
    everyone = make_attack("rmia", {"population": "all"}).score(signals, 0, refs)
    assert not np.array_equal(everyone, plain)


def test_auto_offline_a_picks_the_best_auc_on_the_paired_model():
    signals, _, _, keep = random_signals(models=8, records=60, seed=7)
    target, refs = 2, [0, 1, 3, 4, 5, 6, 7]  # paired model: 3
    others = [m for m in refs if m != 3]
    aucs = [
        roc_auc_score(
            keep[3], make_attack("rmia-offline", {"offline_a": a}).score(signals, 3, others)
        )
        for a in np.round(np.arange(0, 1.01, 0.1), 1)
    ]
    best = float(np.round(np.arange(0, 1.01, 0.1), 1)[int(np.argmax(aucs))])
    auto = make_attack("rmia-offline", {"offline_a": "auto"}).score(signals, target, refs)
    fixed = make_attack("rmia-offline", {"offline_a": best}).score(signals, target, refs)
    np.testing.assert_array_equal(auto, fixed)


def test_rmia_separates_members():
    signals, _, _, keep = random_signals(16, 300, 2, seed=8, member_boost=4.0)
    scores = make_attack("rmia").score(signals, 0, list(range(1, 16)))
    assert roc_auc_score(keep[0], scores) > 0.7


def test_taylor_soft_margin_transform_matches_direct_formula():
    rng = np.random.default_rng(9)
    z = rng.normal(0, 4, (3, 5, 2, 6))
    y = rng.integers(0, 6, 5)
    expected = [
        [[direct_taylor_soft_margin(z[m, n, a], y[n], 1.5, 0.3, 6) for a in range(2)]
         for n in range(5)]
        for m in range(3)
    ]  # fmt: skip
    np.testing.assert_allclose(taylor_soft_margin(z, y, 1.5, 0.3, 6), expected, rtol=1e-12)


@pytest.mark.parametrize("order", [3, 4])
def test_taylor_soft_margin_ignores_where_the_label_sits_among_tied_classes(order):
    """The label tied with other classes (whose terms are negative at odd orders), ten classes
    in many orders: the same value to the bit, and the direct formula's."""
    rng = np.random.default_rng(order)
    values = np.array([-8.0, -8.0, -8.0, -7.3, -6.1, -5.2, -3.7, -2.9, -1.4, 1.1])
    orders = np.array([rng.permutation(10) for _ in range(40)])
    z = values[orders][:, None, :]  # 40 records, one augmentation
    y = np.argmax(orders == rng.integers(0, 3, 40)[:, None], axis=1)  # the label: a tied class
    got = taylor_soft_margin(z, y, 2.0, 0.6, order)[:, 0]
    assert np.all(got == got[0])
    expected = direct_taylor_soft_margin(values, 0, 2.0, 0.6, order)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_odd_taylor_order_turning_negative_is_a_clear_error():
    signals, _, _, _ = random_signals(seed=10)
    logits = np.stack(signals.logits)
    logits[:, :, :, :] = -20.0  # every polynomial of odd order is negative here
    logits[:, :, :, 0] = 0.0
    bad = Signals.from_arrays(logits, np.zeros(40, np.int64), signals.keep)
    with pytest.raises(MiakitError, match="even taylor_order"):
        make_attack("rmia", {"taylor_order": 3}).score(bad, 0, [1, 2, 3])


def test_bad_inputs_are_clear_errors():
    signals, _, _, _ = random_signals(seed=11)
    with pytest.raises(MiakitError, match="NaN"):
        make_attack("rmia").score(nan_signals(signals, 2, 5), 0, [1, 2, 3])
    with pytest.raises(MiakitError, match=r"population indices must lie in \[0, 40\)"):
        make_attack("rmia", {"population": [0, 40]}).score(signals, 0, [1, 2])
    with pytest.raises(MiakitError, match="at least 2"):
        make_attack("rmia", {"population": [3]}).score(signals, 0, [1, 2])
    with pytest.raises(MiakitError, match="offline_a"):
        make_attack("rmia-offline", {"offline_a": 1.5})
    with pytest.raises(MiakitError, match="OUT references"):
        # reference 1 alone is IN on `record`: offline has no OUT model there
        make_attack("rmia-offline").score(signals, 0, [1])
