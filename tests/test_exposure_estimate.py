"""The Secret Sharer's extrapolated exposure (a skew-normal fitted to sampled alternatives): against
the analytic CDF of a known skew-normal, against exact enumeration of a space small enough to
rank in full, its bounds and refusals; the sample of alternatives and the settings that choose it."""

import math

import numpy as np
import pytest
from scipy import stats

from miakit.config import load_config
from miakit.data.canaries import draw_alternatives, enumerates_alternatives
from miakit.errors import MiakitError
from miakit.evaluate.exposure import estimated_exposure, exposure
from miakit.plan import configured_alternatives, configured_secrets, query_hash, scored_secrets

LOC, SCALE = 60.0, 6.0  # bits: about the log-perplexity of a short text under a small LM


@pytest.mark.parametrize("shape", [4.0, -4.0])
def test_the_estimate_matches_the_analytic_exposure_of_a_known_skew_normal(shape):
    """Alternatives' log-perplexities drawn from a skew-normal whose CDF F is known: the exposure
    of a canary at the point where F = 2^−b is log2 (A + 1) − log2 (1 + A·2^−b) (≈ b bits until
    it saturates at log2 |R|). The mean of 20 estimates, each from its own sample of 5,000, lies
    within 4 standard errors of it (their spread measured here: the sampling error)."""
    alternatives = 10**5
    bits = np.array([2.0, 5.0, 10.0, 15.0, 25.0])
    canaries = stats.skewnorm.ppf(2.0**-bits, shape, LOC, SCALE)
    truth = math.log2(alternatives + 1) - np.log2(1 + alternatives * 2.0**-bits)
    draw = np.random.default_rng(7)
    estimates = []
    for _ in range(20):
        sample = stats.skewnorm.rvs(shape, LOC, SCALE, size=5000, random_state=draw)
        found, fit = estimated_exposure(canaries, sample, alternatives)
        estimates.append(found)
        assert fit[0] == pytest.approx(shape, rel=0.5) and fit[2] == pytest.approx(SCALE, rel=0.2)
    estimates = np.array(estimates)
    error = estimates.std(axis=0, ddof=1) / math.sqrt(len(estimates))
    np.testing.assert_array_less(np.abs(estimates.mean(axis=0) - truth), 4 * error + 1e-9)
    # the sampling error is small (Section 4.3's premise), and at 25 bits the estimate saturates
    # near log2 |R| = 16.6 rather than the paper's unbounded −log2 F = 25
    np.testing.assert_array_less(estimates.std(axis=0), [0.05, 0.15, 0.4, 0.6, 0.01])
    assert estimates[:, -1].max() <= math.log2(alternatives + 1)


@pytest.mark.parametrize("shape", [4.0, -4.0])
def test_the_estimate_agrees_with_exact_enumeration_of_a_small_space(shape):
    """|R| = 10^5 secrets whose log-perplexities are one draw from a skew-normal, five canaries
    among them at exact ranks 101, 301, 1001, 3001 and 10001 (exposure 10.0 to 3.3 bits), each
    canary's exact exposure from `exposure` (every alternative ranked). The estimate from 2,000
    alternatives sampled by `draw_alternatives` estimates the skew-normal's CDF, not the one
    draw's empirical one: the two differ at rank k by about 1/(√k ln 2) bits (the rank's Poisson
    spread), so the mean of 20 estimates lies within 4·√(1/(k ln² 2) + SE²) of the exact
    exposure, SE the mean's standard error. A simulation of 60 such spaces (shapes 4, −4, 1)
    measured the mean minus exact: mean ≤ 0.02 bits at these ranks, its spread 0.165, 0.092,
    0.058, 0.033 bits at ranks 100 to 3000, as the formula predicts (0.144, 0.083, 0.046, 0.026
    plus the standard error)."""
    size, ranks = 10**5, np.array([100, 300, 1000, 3000, 10000])
    draw = np.random.default_rng(11)
    values = stats.skewnorm.rvs(shape, LOC, SCALE, size=size, random_state=draw)
    secrets = draw.choice(size, size=len(ranks), replace=False)
    others = np.sort(np.delete(values, secrets))
    values[secrets] = (others[ranks - 1] + others[ranks]) / 2  # above k alternatives, below k+1
    exact = exposure(values, secrets)
    np.testing.assert_allclose(exact, np.log2(size - len(ranks) + 1) - np.log2(ranks + 1))
    estimates = []
    for _ in range(20):
        sample = draw_alternatives(secrets, 5, 2000, draw)
        estimates.append(estimated_exposure(values[secrets], values[sample], size - 5)[0])
    estimates = np.array(estimates)
    error = estimates.std(axis=0, ddof=1) / math.sqrt(len(estimates))
    tolerance = 4 * np.sqrt(1 / (ranks * math.log(2) ** 2) + error**2)
    np.testing.assert_array_less(np.abs(estimates.mean(axis=0) - exact), tolerance)


def test_the_estimate_stays_within_zero_and_log2_of_the_candidates():
    sample = np.random.default_rng(0).normal(50.0, 3.0, size=500)
    found, _ = estimated_exposure(np.array([-1e6, 50.0, 1e6]), sample, 999)
    assert found[0] == pytest.approx(math.log2(1000)) and found[2] == pytest.approx(0.0, abs=1e-12)
    assert 0.5 < found[1] < 1.5  # the median: half of R at most as perplexing, ≈ 1 bit


@pytest.mark.parametrize(
    ("canaries", "sample", "alternatives", "message"),
    [
        ([1.0], np.arange(99.0), 10**6, r"99 sampled alternatives; .*at least 100"),
        ([1.0], np.arange(200.0), 150, r"there are 150 alternatives"),
        ([np.nan], np.arange(200.0), 10**6, r"must be finite"),
        ([1.0], np.r_[np.arange(199.0), np.inf], 10**6, r"must be finite"),
        ([1.0], np.full(200, 3.0), 10**6, r"one log-perplexity; no fit"),
    ],
)
def test_the_estimate_refuses_what_it_cannot_fit(canaries, sample, alternatives, message):
    with pytest.raises(MiakitError, match=message):
        estimated_exposure(np.array(canaries), sample, alternatives)


def test_sampled_alternatives_are_uniform_distinct_and_never_a_canarys_secret():
    secrets = np.array([3, 17, 42, 64, 99])
    draw = np.random.default_rng(5)
    counts = np.zeros(100)
    for _ in range(2000):
        sample = draw_alternatives(secrets, 2, 10, draw)
        assert len(np.unique(sample)) == 10 and np.all(np.diff(sample) > 0)
        counts[sample] += 1
    assert counts[secrets].sum() == 0
    # each of the 95 alternatives drawn with probability 10/95 per draw
    assert stats.chisquare(np.delete(counts, secrets)).pvalue > 1e-3
    with pytest.raises(MiakitError, match=r"^dp_audit.canaries.secret_samples: 96 .*only 95"):
        draw_alternatives(secrets, 2, 96, draw)


def test_enumeration_where_the_alternatives_are_no_more_than_the_samples():
    assert enumerates_alternatives(20, 4, 10_000)  # 9,980 alternatives: all scored
    assert enumerates_alternatives(0, 4, 10_000)
    assert not enumerates_alternatives(20, 5, 10_000)
    assert not enumerates_alternatives(20, 4, 9_979)


def _secrets(*overrides: str):
    base = ["dp_audit.canaries.count=8", "dp_audit.canaries.kind=secret"]
    return load_config(None, [*base, *overrides])


def test_the_sample_is_drawn_from_the_run_seed_and_enters_the_query_hash():
    sampled = _secrets("dp_audit.canaries.secret_digits=9", "dp_audit.canaries.secret_samples=300")
    sample = configured_alternatives(sampled)
    assert sample.shape == (300,) and sample.max() < 10**9
    assert np.array_equal(sample, configured_alternatives(sampled))  # reproducible
    assert not np.isin(sample, configured_secrets(sampled)).any()
    scored = scored_secrets(sampled)
    assert np.array_equal(scored, np.r_[configured_secrets(sampled), sample])
    other_seed = sampled.model_copy(update={"seed": 1})
    assert not np.array_equal(configured_alternatives(other_seed), sample)
    enumerated = _secrets("dp_audit.canaries.secret_digits=3")
    assert configured_alternatives(enumerated) is None
    assert np.array_equal(scored_secrets(enumerated), np.arange(1000))

    def hashed(config):
        return query_hash(config.training_inputs(), config, "pool", np.ones(4, bool), 0)

    more = _secrets("dp_audit.canaries.secret_digits=9", "dp_audit.canaries.secret_samples=301")
    assert hashed(more) != hashed(sampled)
    assert hashed(other_seed) != hashed(sampled)
    # an enumerated R does not depend on secret_samples: its hash is the one it had
    fewer = _secrets("dp_audit.canaries.secret_digits=3", "dp_audit.canaries.secret_samples=2000")
    assert hashed(fewer) == hashed(enumerated)
