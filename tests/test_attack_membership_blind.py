"""Issue 17, item 3: an attack's score never reads the evaluation label (membership in the target)
of the record it scores. Two records with identical logits under every model, identical labels and
identical reference membership, differing only in whether the target trained on them, must get
the same score from every registered attack."""

import numpy as np
import pytest

from miakit.attacks import make_attack
from miakit.signals import Signals

from .attack_inputs import LOGIT_ATTACKS
from .synthetic import balanced_keep_matrix

MODELS, RECORDS, TWIN = 8, 40, (10, 11)


def twin_records(target: int):
    """Records 10 and 11 are copies of each other except that only record 10 is IN the target."""
    rng = np.random.default_rng(5)
    keep = balanced_keep_matrix(MODELS, RECORDS, 5)
    labels = rng.integers(0, 4, RECORDS)
    logits = rng.normal(0, 2, (MODELS, RECORDS, 2, 4))
    logits[np.arange(MODELS)[:, None], np.arange(RECORDS), :, labels] += 2.0 * keep[..., None]
    traces = rng.gamma(2.0, 0.5, (MODELS, 6, RECORDS))
    a, b = TWIN
    features = rng.normal(0, 1, (RECORDS, 3))
    logits[:, b], labels[b], traces[:, :, b] = logits[:, a], labels[a], traces[:, :, a]
    features[b] = features[a]
    keep[:, b] = keep[:, a]
    keep[target, a], keep[target, b] = True, False
    return Signals.from_arrays(logits, labels, keep, traces=traces, features=features)


@pytest.mark.parametrize("name", sorted(LOGIT_ATTACKS))
@pytest.mark.parametrize("target", [0, 5])
def test_scores_do_not_depend_on_the_scored_records_membership(name, target):
    signals = twin_records(target)
    scores = make_attack(name).score_targets(signals, [target], None)[0]
    a, b = TWIN
    assert np.isfinite(scores[[a, b]]).all()
    # to rounding: leave-one-out statistics remove the target's term from sums over all models
    np.testing.assert_allclose(scores[a], scores[b], rtol=1e-12, atol=1e-14)


@pytest.mark.attack("rmia")
@pytest.mark.attack("attack-p")
@pytest.mark.parametrize("name", ["rmia", "attack-p"])
def test_population_attacks_compare_the_twins_exactly_alike(name):
    """The fault of item 3: with Z = the target's non-members and the self pair dropped, the
    non-member twin's count was divided by |Z| − 1 and the member's by |Z|."""
    signals = twin_records(0)
    scores = make_attack(name).score_targets(signals, [0], None)[0]
    assert scores[TWIN[0]] == scores[TWIN[1]]
