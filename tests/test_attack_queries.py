"""Query-only records (out-of-distribution studies): appending them never changes the pool's
scores, and they are scored by each attack's own formula."""

import numpy as np
import pytest
from scipy.special import log_ndtr

from miakit.attacks import make_attack
from miakit.errors import MiakitError
from miakit.signals import Signals, log_odds

from .attack_inputs import LOGIT_ATTACKS, chosen_references, random_signals

MODELS, RECORDS, QUERIES = 8, 60, 13


def with_queries(signals: Signals, seed: int = 1) -> tuple[Signals, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (MODELS, QUERIES, signals.num_augmentations, signals.num_classes))
    labels = rng.integers(0, signals.num_classes, QUERIES)
    return signals.with_queries(list(logits), labels), logits, labels


#: lt-iqr has no loss traces and qmia no features for query-only records (each says why: its tests)
@pytest.mark.parametrize("name", sorted(set(LOGIT_ATTACKS) - {"lt-iqr", "qmia"}))
def test_queries_leave_the_pool_scores_as_they_were(name):
    signals, *_ = random_signals(models=MODELS, records=RECORDS, augmentations=2)
    extended, *_ = with_queries(signals)
    attack = make_attack(name)
    plain = attack.score_leave_one_out(signals, [0, 3])
    both = attack.score_leave_one_out(extended, [0, 3])
    # up to the last bit: a learned attack's classifier predicts a larger batch
    np.testing.assert_allclose(both[:, :RECORDS], plain, rtol=1e-12, atol=1e-15)
    assert np.isfinite(both[:, RECORDS:]).all()


@pytest.mark.attack("lt-iqr")
def test_lt_iqr_cannot_score_queries_and_says_why():
    signals, *_ = random_signals(models=MODELS, records=RECORDS)
    with pytest.raises(MiakitError, match="loss traces"):
        make_attack("lt-iqr").score(with_queries(signals)[0], 0, [1, 2])


def test_query_records_must_be_out_everywhere():
    _, logits, labels, keep = random_signals(models=MODELS, records=RECORDS)
    with pytest.raises(MiakitError, match="OUT for every model"):
        Signals.from_arrays(logits, labels, keep, queries=RECORDS - 1)


def phi_and_pool(seed=0):
    signals, logits, labels, keep = random_signals(models=MODELS, records=RECORDS, seed=seed)
    extended, q_logits, q_labels = with_queries(signals)
    return extended, log_odds(logits, labels)[..., 0], log_odds(q_logits, q_labels)[..., 0], keep


def test_offline_lira_scores_a_query_against_all_references():
    extended, _, q_phi, _ = phi_and_pool()
    refs = list(range(1, MODELS))
    scores = make_attack("lira-offline").score(extended, 0, refs)[RECORDS:]
    mu, sd = np.median(q_phi[refs], axis=0), np.std(q_phi[refs], axis=0)
    np.testing.assert_allclose(scores, log_ndtr((q_phi[0] - mu) / sd), rtol=1e-12)


@pytest.mark.parametrize("counts", ["equal", "all"])
def test_online_lira_shifts_a_querys_out_gaussian_by_the_pools_mean_gap(counts):
    extended, phi, q_phi, keep = phi_and_pool()
    refs = list(range(1, MODELS))
    gaps, sds = [], []
    for n in range(RECORDS):  # the pool's per-record IN and OUT Gaussians, one at a time
        use = chosen_references(keep, n, 0, refs, ("IN", "OUT"), counts)
        inside = [phi[r, n] for r in use["IN"]]
        outside = [phi[r, n] for r in use["OUT"]]
        gaps.append(np.median(inside) - np.median(outside))
        sds.append(np.std(inside))
    attack = make_attack("lira-online", {"reference_counts": counts})
    scores = attack.score(extended, 0, refs)[RECORDS:]
    for k in range(QUERIES):
        values = q_phi[refs, k]
        mu_out, sd_out = np.median(values), np.std(values)
        mu_in, sd_in = mu_out + np.mean(gaps), np.mean(sds)
        x = q_phi[0, k]
        expected = (
            -0.5 * ((x - mu_in) / sd_in) ** 2 - np.log(sd_in)
            + 0.5 * ((x - mu_out) / sd_out) ** 2 + np.log(sd_out)
        )  # fmt: skip
        assert scores[k] == pytest.approx(expected, rel=1e-10)
