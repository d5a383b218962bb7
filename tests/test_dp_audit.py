"""DP auditing bounds, each checked against an independent computation written here."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from miakit.errors import MiakitError
from miakit.evaluate import dp_audit

# ---------------------------------------------------------------- one run


def _binomial_tail_exact(r, v, q):
    """P[Binomial(r, q) ≥ v] by summing math.comb terms (float64 powers, exact coefficients)."""
    return sum(math.comb(r, k) * q**k * (1 - q) ** (r - k) for k in range(v, r + 1))


def _p_value_by_loops(m, r, v, eps, delta):
    q = math.exp(eps) / (1 + math.exp(eps))
    pmf = [math.comb(r, k) * q**k * (1 - q) ** (r - k) for k in range(r + 1)]
    alpha = 0.0
    for i in range(1, v + 1):
        alpha = max(alpha, sum(pmf[v - i : v]) / i)
    return min(_binomial_tail_exact(r, v, q) + 2 * m * delta * alpha, 1.0)


@pytest.mark.parametrize(
    "m,r,v,eps,delta",
    [
        (10, 10, 7, 0.5, 0.0),
        (100, 40, 30, 1.3, 1e-3),
        (50, 20, 20, 3.0, 1e-5),
        (30, 5, 0, 1.0, 0.1),
    ],
)
def test_one_run_p_value_matches_loops(m, r, v, eps, delta):
    assert dp_audit.one_run_p_value(m, r, v, eps, delta) == pytest.approx(
        _p_value_by_loops(m, r, v, eps, delta), rel=1e-10, abs=1e-300
    )


def test_one_run_epsilon_is_where_the_exact_tail_crosses_beta():
    m, r, v, beta = 1000, 200, 150, 0.05
    eps = dp_audit.one_run_epsilon(m, r, v, 0.0, beta)
    q = lambda e: math.exp(e) / (1 + math.exp(e))  # noqa: E731
    assert stats.binom.sf(v - 1, r, q(eps)) <= beta
    assert stats.binom.sf(v - 1, r, q(eps + 1e-6)) > beta
    # and with δ > 0 the bound is smaller
    assert dp_audit.one_run_epsilon(m, r, v, 1e-5, beta) < eps


def test_one_run_epsilon_zero_when_chance_explains_it():
    # 11 of 20 right is what a coin does: P[Bin(20, 1/2) ≥ 11] > 0.05
    assert dp_audit.one_run_epsilon(20, 20, 11, 0.0, 0.05) == 0.0


def test_one_run_bound_is_sound_exactly_for_randomized_response():
    """Brute force over every guess count: under ε-DP randomized response on r guessed canaries,
    the count of correct guesses is exactly Binomial(r, e^ε/(1+e^ε)); the probability that the
    bound exceeds ε is then an exact sum, and it must be ≤ β."""
    for eps, r in [(0.5, 60), (2.0, 40), (4.0, 30)]:
        q = Fraction(math.exp(eps)) / (1 + Fraction(math.exp(eps)))
        exceed = Fraction(0)
        for v in range(r + 1):
            if dp_audit.one_run_epsilon(r, r, v, 0.0, 0.05) > eps:
                exceed += math.comb(r, v) * q**v * (1 - q) ** (r - v)
        assert float(exceed) <= 0.05


def test_one_run_soundness_simulation_top_k_guesses():
    """m canaries through ε-DP randomized response, guesses from the top/bottom k scores."""
    rng = np.random.default_rng(0)
    eps, m, k, reps = 2.0, 500, 100, 300
    q = math.exp(eps) / (1 + math.exp(eps))
    bounds = []
    for _ in range(reps):
        members = rng.random(m) < 0.5
        truthful = rng.random(m) < q
        reported = np.where(truthful, members, ~members)
        scores = reported + 0.01 * rng.random(m)
        bounds.append(dp_audit.one_run_audit(scores, members, k, k, 0.0, 0.05).epsilon_lower)
    bounds = np.array(bounds)
    assert (bounds > eps).mean() <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / reps)
    assert np.median(bounds) > 0.5  # and it has power


def test_one_run_guesses_counts_by_hand():
    scores = np.array([0.9, 0.1, 0.5, 0.8, 0.2, 0.3])
    members = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    # top 2: 0.9 (in, right), 0.8 (out, wrong); bottom 2: 0.1 (out, right), 0.2 (in, wrong)
    assert dp_audit.one_run_guesses(scores, members, 2, 2) == (4, 2)
    assert dp_audit.one_run_guesses(scores, members, 1, 0) == (1, 1)


def test_choose_guess_counts_prefers_the_sure_side():
    rng = np.random.default_rng(1)
    members = rng.random(2000) < 0.5
    # members among the top are certain, the bottom is pure noise
    scores = np.where(members & (rng.random(2000) < 0.2), 10.0, 0.0) + rng.random(2000)
    f_pos, f_neg = dp_audit.choose_guess_counts(scores, members, 0.05)
    assert f_pos > 0 and f_neg == 0


def test_one_run_bad_input():
    with pytest.raises(MiakitError, match="v ≤ r ≤ m"):
        dp_audit.one_run_p_value(5, 6, 1, 1.0, 0.0)
    with pytest.raises(MiakitError, match="beta"):
        dp_audit.one_run_epsilon(5, 5, 1, 0.0, 1.5)
    with pytest.raises(MiakitError, match="k\\+"):
        dp_audit.one_run_guesses(np.zeros(3), np.zeros(3, bool), 2, 2)
    with pytest.raises(MiakitError, match="NaN"):
        dp_audit.one_run_guesses(np.array([np.nan, 1.0]), np.zeros(2, bool), 1, 0)


# ---------------------------------------------------------------- many runs, pooled guesses


def _pooled_bound_by_clopper_pearson(scores, members, k_pos, k_neg, beta):
    """δ = 0: logit of the one-sided Clopper–Pearson lower bound (scipy's beta quantile) on the
    precision of guesses counted by loops over the pooled pairs sorted by score."""
    pairs = sorted(zip(scores.ravel().tolist(), members.ravel().tolist(), strict=True))
    guessed_in = pairs[len(pairs) - k_pos :] if k_pos else []
    correct = sum(m for _, m in guessed_in) + sum(not m for _, m in pairs[:k_neg])
    r = k_pos + k_neg
    p_lo = stats.beta.ppf(beta, correct, r - correct + 1) if correct else 0.0
    return max(0.0, math.log(p_lo / (1 - p_lo))) if p_lo > 0 else 0.0, r, correct


def test_many_run_audit_is_clopper_pearson_on_pooled_guesses():
    rng = np.random.default_rng(6)
    members = rng.random((8, 200)) < 0.5
    scores = members * 1.0 + rng.normal(size=(8, 200)) + rng.normal(size=(8, 1))
    audit = dp_audit.many_run_audit(scores[:4], members[:4], scores[4:], members[4:], 0.0, 0.05)
    f_pos, f_neg = dp_audit.choose_guess_counts(scores[:4].ravel(), members[:4].ravel(), 0.05)
    assert (audit.k_pos, audit.k_neg) == (round(f_pos * 800), round(f_neg * 800))
    want, r, v = _pooled_bound_by_clopper_pearson(
        scores[4:], members[4:], audit.k_pos, audit.k_neg, 0.05
    )
    assert (audit.guesses, audit.correct, audit.m, audit.method) == (r, v, 800, "many_runs")
    assert audit.epsilon_lower == pytest.approx(want, abs=1e-9)
    assert audit.epsilon_lower > 0.5


def _correlated_randomized_response(rng, eps, runs, m, shared):
    """ε-DP per canary, correlated within a run: run t reports each bit through ε-randomized
    response, then (shared="shift") adds one offset z_t ~ N(0, 0.5²) to all its scores, or
    (shared="key") flips all its reports with probability 1/2 (a mixture of ε-DP mechanisms,
    chosen independently of the bits, is ε-DP)."""
    members = rng.random((runs, m)) < 0.5
    truthful = rng.random((runs, m)) < math.exp(eps) / (1 + math.exp(eps))
    reported = np.where(truthful, members, ~members).astype(np.float64)
    if shared == "shift":
        reported += rng.normal(scale=0.5, size=(runs, 1))
    else:
        flip = rng.random((runs, 1)) < 0.5
        reported = np.where(flip, 1 - reported, reported)
    return reported + 1e-3 * rng.random((runs, m)), members


@pytest.mark.parametrize("shared", ["shift", "key"])
def test_many_run_audit_soundness_with_correlated_scores_within_a_run(shared):
    """Known ε, scores correlated within each run: the pooled bound exceeds ε in at most ~β of
    the repetitions (the guesses' correctness is correlated within runs; Theorem 3 of Steinke et
    al. does not need independence)."""
    rng = np.random.default_rng(7)
    eps, runs, m, reps, beta = 1.0, 8, 100, 200, 0.05
    bounds = []
    for _ in range(reps):
        scores, members = _correlated_randomized_response(rng, eps, runs, m, shared)
        half = runs // 2
        parts = (scores[:half], members[:half], scores[half:], members[half:])
        bounds.append(dp_audit.many_run_audit(*parts, 0.0, beta).epsilon_lower)
    bounds = np.array(bounds)
    assert (bounds > eps).mean() <= beta + 2 * math.sqrt(beta * (1 - beta) / reps)
    if shared == "shift":
        assert np.median(bounds) > 0.3  # and it has power


def test_many_run_audit_bad_input():
    s, m = np.arange(4.0), np.array([1, 0, 1, 0], bool)
    with pytest.raises(MiakitError, match="shape"):
        dp_audit.many_run_audit(s, m[:3], s, m, 0.0, 0.05)
    with pytest.raises(MiakitError, match="delta"):
        dp_audit.many_run_audit(s, m, s, m, 1.0, 0.05)


# ---------------------------------------------------------------- many runs, independent trials


def _cp_lower(k, n, level):
    """Clopper–Pearson lower bound by inverting scipy's exact binomial test (bisection)."""
    if k == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(80):
        p = (lo + hi) / 2
        if stats.binomtest(k, n, p, alternative="greater").pvalue > level:
            hi = p
        else:
            lo = p
    return lo


def _bound_at_threshold_by_loops(scores, members, t, delta, beta):
    pos = [s for s, m in zip(scores, members, strict=True) if m]
    neg = [s for s, m in zip(scores, members, strict=True) if not m]
    tp = sum(s >= t for s in pos)
    fp = sum(s >= t for s in neg)
    tpr_lo = _cp_lower(tp, len(pos), beta / 2)
    fpr_hi = 1 - _cp_lower(len(neg) - fp, len(neg), beta / 2)
    tnr_lo, fnr_hi = 1 - fpr_hi, 1 - tpr_lo
    cands = [0.0]
    if tpr_lo - delta > 0 and fpr_hi > 0:
        cands.append(math.log((tpr_lo - delta) / fpr_hi))
    if tnr_lo - delta > 0 and fnr_hi > 0:
        cands.append(math.log((tnr_lo - delta) / fnr_hi))
    mus = [0.0]
    if tpr_lo > 0 and fpr_hi < 1:
        mus.append(stats.norm.ppf(tpr_lo) - stats.norm.ppf(fpr_hi))
    if tnr_lo > 0 and fnr_hi < 1:
        mus.append(stats.norm.ppf(tnr_lo) - stats.norm.ppf(fnr_hi))
    return max(cands), max(mus)


def test_threshold_audit_matches_loops_and_binomtest():
    rng = np.random.default_rng(2)
    n = 300
    sel_m = rng.random(n) < 0.5
    sel_s = sel_m * 1.5 + rng.normal(size=n)
    ev_m = rng.random(n) < 0.5
    ev_s = ev_m * 1.5 + rng.normal(size=n)
    delta, beta = 1e-3, 0.05
    audit = dp_audit.threshold_audit(sel_s, sel_m, ev_s, ev_m, delta, beta)
    # the thresholds maximise the loop-computed bound on the selection part
    cands = np.append(np.unique(sel_s), np.inf)
    sel_bounds = [_bound_at_threshold_by_loops(sel_s, sel_m, t, delta, beta) for t in cands[::7]]
    eps_at = _bound_at_threshold_by_loops(sel_s, sel_m, audit.epsilon_threshold, delta, beta)[0]
    mu_at = _bound_at_threshold_by_loops(sel_s, sel_m, audit.mu_threshold, delta, beta)[1]
    assert eps_at >= max(b[0] for b in sel_bounds) - 1e-9
    assert mu_at >= max(b[1] for b in sel_bounds) - 1e-9
    # the reported bounds are those of the evaluation part at those thresholds
    want_eps = _bound_at_threshold_by_loops(ev_s, ev_m, audit.epsilon_threshold, delta, beta)[0]
    want_mu = _bound_at_threshold_by_loops(ev_s, ev_m, audit.mu_threshold, delta, beta)[1]
    assert audit.epsilon_lower == pytest.approx(want_eps, abs=1e-7)
    assert audit.mu_lower == pytest.approx(want_mu, abs=1e-7)
    assert audit.epsilon_lower > 0 and audit.mu_lower > 0


def test_threshold_audit_gaussian_scores_recover_mu():
    """Members N(μ, 1), non-members N(0, 1): the trade-off curve is exactly G_μ, so μ_lower sits
    just under μ with many trials, and ε_lower under the best threshold's ln((TPR − δ)/FPR)."""
    rng = np.random.default_rng(3)
    mu, n, delta = 1.0, 200_000, 1e-5
    members = rng.random(2 * n) < 0.5
    scores = members * mu + rng.normal(size=2 * n)
    audit = dp_audit.threshold_audit(scores[:n], members[:n], scores[n:], members[n:], delta, 0.05)
    assert mu - 0.1 < audit.mu_lower <= mu
    ts = np.linspace(-3, 8, 20001)
    tpr, fpr = stats.norm.sf(ts - mu), stats.norm.sf(ts)
    best = np.max(np.log(np.maximum(tpr - delta, 1e-300) / fpr)[fpr * n > 50])
    assert 0 < audit.epsilon_lower <= best


def test_threshold_audit_soundness_laplace_mechanism():
    """score = membership + Laplace(1/ε) is ε-DP; the bound exceeds ε in ≤ ~β of repetitions."""
    rng = np.random.default_rng(4)
    eps, n, reps = 1.0, 1000, 200
    exceed = 0
    for _ in range(reps):
        members = rng.random(2 * n) < 0.5
        scores = members + rng.laplace(scale=1 / eps, size=2 * n)
        audit = dp_audit.threshold_audit(
            scores[:n], members[:n], scores[n:], members[n:], 0.0, 0.05
        )
        exceed += audit.epsilon_lower > eps
    assert exceed / reps <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / reps)


def test_threshold_audit_bad_input():
    s, m = np.arange(4.0), np.array([1, 0, 1, 0], bool)
    with pytest.raises(MiakitError, match="both members"):
        dp_audit.threshold_audit(s, np.ones(4, bool), s, m, 0.0, 0.05)
    with pytest.raises(MiakitError, match="shape"):
        dp_audit.threshold_audit(s, m[:3], s, m, 0.0, 0.05)
    with pytest.raises(MiakitError, match="delta"):
        dp_audit.threshold_audit(s, m, s, m, 1.0, 0.05)


# ---------------------------------------------------------------- Gaussian DP conversion


def _delta_by_tradeoff_grid(mu, eps):
    """δ(ε) = max over α of 1 − G_μ(α) − e^ε·α, with G_μ(α) = Φ(Φ⁻¹(1 − α) − μ), on a log grid."""
    alpha = np.logspace(-14, 0, 400_001)[:-1]
    g = stats.norm.cdf(stats.norm.isf(alpha) - mu)
    return float(np.max(1 - g - np.exp(eps) * alpha))


@pytest.mark.parametrize("mu,eps", [(0.5, 0.3), (1.0, 1.0), (2.0, 2.5), (3.0, 6.0)])
def test_gdp_delta_matches_tradeoff_definition(mu, eps):
    assert dp_audit.gdp_delta(mu, eps) == pytest.approx(_delta_by_tradeoff_grid(mu, eps), rel=1e-4)


def test_gdp_epsilon_inverts_delta():
    for mu, delta in [(0.5, 1e-5), (1.0, 1e-5), (2.0, 1e-3)]:
        eps = dp_audit.gdp_epsilon(mu, delta)
        assert _delta_by_tradeoff_grid(mu, eps) == pytest.approx(delta, rel=1e-3)
    assert dp_audit.gdp_epsilon(0.0, 1e-5) == 0.0
    assert dp_audit.gdp_epsilon(0.01, 0.5) == 0.0  # δ(0) = 2Φ(0.005) − 1 < 0.5
