"""Without any membership signal, every attack's mean AUC over its targets is 0.5 within its
sampling error, at every number of models (issue 35: leave-one-out with few models).

The models' signals are exchangeable over models given the record (a per-record offset plus
independent noise), whatever the keep matrix says. The sampling error of the mean AUC over the
T targets is DeLong's, with the records as the independent units: each target's AUC is a
two-sample U-statistic over the same records, so its influence on the mean is summed per record
over targets before squaring, which counts the correlation of targets that share records. (A
simulation over 60 seeds at M = 8, 3,000 records gave an empirical standard deviation of the mean
of 0.0046 for online LiRA against this estimate's 0.0045.)
"""

import numpy as np
import pytest
from scipy.stats import rankdata

from miakit.attacks import make_attack
from miakit.signals import Signals

from .synthetic import balanced_keep_matrix, binary_logits_from_log_odds

REFERENCE_ATTACKS = [
    ("lira-online", {}),
    ("lira-online-fixed", {}),
    ("lira-offline", {}),
    ("lira-offline", {"offline_tail": "two-sided"}),
    ("lira-offline-fixed", {}),
    ("attack-r", {}),
    ("attack-r", {"threshold": "logit_rescale"}),
    ("rmia", {}),
    ("rmia-offline", {}),
    ("attack-p", {}),
    ("loss", {}),
]
pytestmark = [pytest.mark.attack(name) for name in {name for name, _ in REFERENCE_ATTACKS}]

#: Records per number of models: about 0.004 of sampling error on each mean AUC.
RECORDS = {4: 12_000, 8: 10_000, 16: 6_000, 32: 4_000}
#: How many standard errors a mean AUC may lie from 0.5 (44 checks: a false alarm has odds
#: of about 3 in 1,000 under the normal approximation).
Z = 4.0


def no_signal(
    num_models: int, num_records: int, augmentations: int = 2, seed: int = 0, balanced=True
):
    """Signals without membership effect; the keep matrix balanced (every record IN for half the
    models) or, with balanced False, of independent fair bits, each record's column redrawn until
    it has at least two IN and two OUT models (a rule symmetric in IN and OUT, so that every
    target has a reference of each side and chance is still 0.5)."""
    rng = np.random.default_rng(seed)
    if balanced:
        keep = balanced_keep_matrix(num_models, num_records, seed)
    else:
        keep = rng.random((num_models, num_records)) < 0.5
        while (bad := (np.minimum(keep.sum(0), (~keep).sum(0)) < 2)).any():
            keep[:, bad] = rng.random((num_models, bad.sum())) < 0.5
    phi = rng.normal(0, 2, (1, num_records, 1))
    phi = phi + rng.normal(0, 1, (num_models, num_records, augmentations))
    labels = np.ones(num_records, dtype=np.int64)
    return Signals.from_arrays(binary_logits_from_log_odds(phi), labels, keep), keep


def mean_auc_and_error(scores: np.ndarray, keep: np.ndarray) -> tuple[float, float]:
    """Mean over targets of the AUC (ties count half) and DeLong's standard error of that mean
    with records as the units: per target, a member's placement V10 (its share of non-members
    scored below it) and a non-member's V01, whose deviations from the AUC, over the count of
    their side, are each record's influence."""
    num_targets, num_records = scores.shape
    aucs, influence = [], np.zeros(num_records)
    for s, member in zip(scores, keep, strict=True):
        ranks = rankdata(s)
        n1, n0 = member.sum(), (~member).sum()
        auc = (ranks[member].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
        v10 = (ranks[member] - rankdata(s[member])) / n0
        v01 = 1 - (ranks[~member] - rankdata(s[~member])) / n1
        influence[member] += (v10 - auc) / n1
        influence[~member] += (v01 - auc) / n0
        aucs.append(auc)
    influence /= num_targets
    return float(np.mean(aucs)), float(
        np.sqrt(num_records / (num_records - 1) * influence @ influence)
    )


@pytest.mark.parametrize("num_models", sorted(RECORDS))
def test_every_reference_attack_reads_chance_without_signal(num_models):
    signals, keep = no_signal(num_models, RECORDS[num_models])
    targets = range(num_models)
    far = []
    for name, options in REFERENCE_ATTACKS:
        scores = make_attack(name, options).score_targets(signals, targets, None)
        auc, error = mean_auc_and_error(scores, keep)
        if abs(auc - 0.5) > Z * error:
            far.append(f"{name} {options}: {auc:.4f} ± {error:.4f}")
    assert not far, f"M = {num_models}: mean AUC away from 0.5: {far}"


EQUAL_COUNTED = [(n, o) for n, o in REFERENCE_ATTACKS if n.startswith(("lira", "attack-r"))]


@pytest.mark.parametrize("num_models", [8, 16])
def test_equal_counts_read_chance_where_the_counts_vary_over_records(num_models):
    """Where records' IN and OUT counts differ, members and non-members of a record get
    different counts under `equal` (each the smaller of its own references' sides), which is
    still chance over the records."""
    signals, keep = no_signal(num_models, RECORDS[num_models], balanced=False)
    assert (keep.sum(axis=0) != num_models // 2).mean() > 0.5
    far = []
    for name, options in EQUAL_COUNTED:
        scores = make_attack(name, options).score_targets(signals, range(num_models), None)
        auc, error = mean_auc_and_error(scores, keep)
        if abs(auc - 0.5) > Z * error:
            far.append(f"{name} {options}: {auc:.4f} ± {error:.4f}")
    assert not far, f"M = {num_models}: mean AUC away from 0.5: {far}"


@pytest.mark.parametrize(
    ("num_models", "name"),
    [
        (4, "lira-online"),
        (8, "lira-online"),
        (8, "lira-offline"),
        (8, "attack-r"),
        (16, "lira-online-fixed"),
    ],
)
def test_all_references_read_away_from_chance_with_few_models(num_models, name):
    """The same check sees the drift of `reference_counts: all`, where a member of the record
    has one IN reference fewer and one OUT more than a non-member."""
    signals, keep = no_signal(num_models, RECORDS[num_models])
    attack = make_attack(name, {"reference_counts": "all"})
    auc, error = mean_auc_and_error(attack.score_targets(signals, range(num_models), None), keep)
    assert abs(auc - 0.5) > Z * error
