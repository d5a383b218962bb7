"""Empirical differential-privacy lower bounds from membership scores.

Three ways to turn an attack's scores into a statistically valid lower bound on the privacy
parameters of the training algorithm ("the algorithm is *not* (ε, δ)-DP for any ε below this, with
confidence 1 − β"):

- **One run** (Steinke, Nasr and Jagielski, NeurIPS 2023, "Privacy Auditing with One (1) Training
  Run", Theorem 3 and its Algorithm 2): m canaries are each included independently with
  probability 1/2 in one training run; the auditor guesses "in" for the k+ highest-scored canaries
  and "out" for the k− lowest, abstains on the rest, and counts its correct guesses v out of
  r = k+ + k−. Under (ε, δ)-DP, P[correct ≥ v] is at most the tail of Binomial(r, e^ε/(1+e^ε))
  plus a δ term; the bound is the largest ε whose tail is still ≤ β.
- **Many runs, pooled guesses** (many_run_audit): the (target, canary) pairs of several targets
  are the canaries of one audit by the same theorem. Each pair's keep bit is a fair coin that
  changes one record of one model's training set, so the joint training of all models is
  (ε, δ)-DP with respect to each pair, and Theorem 3 holds however the scores of one model's
  canaries are correlated; the guess fractions are chosen on other targets. For δ = 0 the bound
  is logit of the one-sided Clopper–Pearson lower bound on the guesses' precision: the many-run
  threshold audit of Jagielski, Ullman and Oprea (NeurIPS 2020) made valid for many canaries per
  run (their own audit uses one canary per run, which makes the trials independent).
- **Many runs, independent trials** (threshold_audit; Jagielski, Ullman and Oprea 2020; Nasr,
  Song, Thakurta, Papernot and Carlini, S&P 2021, "Adversary Instantiation"): (ε, δ)-DP implies
  TPR ≤ e^ε·FPR + δ and TNR ≤ e^ε·FNR + δ for every threshold test; with one-sided
  Clopper–Pearson bounds on TPR and FPR at a threshold chosen on separate data,
  ln((TPR_lo − δ)/FPR_hi) is a lower bound on ε — when the trials are independent, as with one
  canary per training run; canaries sharing a model are not.
- **Gaussian DP** (Dong, Roth and Su, JRSS-B 2022, "Gaussian Differential Privacy"): μ-GDP
  implies TPR ≤ Φ(Φ⁻¹(FPR) + μ) for every test (Definition 2.6, trade-off function G_μ), so the
  same intervals give a lower bound on μ; Corollary 2.13 converts μ to the (ε, δ) curve
  δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2).

Scores follow miakit's convention: higher means more likely member. Every function here works on
(scores, membership) arrays and knows nothing of models.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special, stats

from miakit.errors import MiakitError

_BISECTION_STEPS = 40


def _check_level(name: str, value: float, low_open: bool = True) -> None:
    ok = (0 < value < 1) if low_open else (0 <= value < 1)
    if not (isinstance(value, (int, float)) and ok):
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise MiakitError(f"dp audit: {name} must lie in {interval}, got {value!r}")


def _largest_below(p_value, beta: float) -> float:
    """Bisection for the largest x ≥ 0 with p_value(x) ≤ β; 0 when p_value(0) > β and inf when it
    stays ≤ β up to 1e4. The returned x always has p_value(x) ≤ β, which is all soundness needs
    (refuting (ε, δ)-DP refutes every smaller ε), even where the δ term makes p_value
    non-monotone."""
    if p_value(0.0) > beta:
        return 0.0
    high = 1.0
    while p_value(high) <= beta:
        high *= 2
        if high > 1e4:
            return math.inf
    low = 0.0
    for _ in range(_BISECTION_STEPS):
        mid = (low + high) / 2
        if p_value(mid) <= beta:
            low = mid
        else:
            high = mid
    return low


# ---------------------------------------------------------------- one run


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Upper bound on P[at least v of r guesses correct] for an (ε, δ)-DP algorithm.

    Steinke, Nasr and Jagielski 2023, Theorem 3 (Algorithm 2): with q = e^ε/(1+e^ε),
    p = P[Binomial(r, q) ≥ v] + 2·m·δ·max_{1≤i≤v} P[v − i ≤ Binomial(r, q) < v] / i.
    m: canaries in the run (guessed or not); r: guesses made; v: correct guesses. Returns a
    probability in [0, 1]. Raises MiakitError unless 0 ≤ v ≤ r ≤ m, ε ≥ 0 and 0 ≤ δ ≤ 1.
    """
    if not (0 <= v <= r <= m):
        raise MiakitError(f"dp audit: need 0 ≤ v ≤ r ≤ m, got m={m}, r={r}, v={v}")
    if not (epsilon >= 0 and 0 <= delta <= 1):
        raise MiakitError(f"dp audit: need ε ≥ 0 and δ in [0, 1], got ε={epsilon}, δ={delta}")
    q = special.expit(epsilon)
    tail = 1.0 if v == 0 else float(special.bdtrc(v - 1, r, q))  # P[Binomial(r, q) ≥ v]
    if delta == 0 or v == 0:
        return float(min(tail, 1.0))
    k = np.arange(v - 1, -1, -1)  # v − i for i = 1..v
    log_pmf = (
        special.gammaln(r + 1)
        - special.gammaln(k + 1)
        - special.gammaln(r - k + 1)
        + special.xlogy(k, q)
        + special.xlog1py(r - k, -q)
    )
    alpha = float(np.max(np.cumsum(np.exp(log_pmf)) / np.arange(1, v + 1)))
    return float(min(tail + 2 * m * delta * alpha, 1.0))


def one_run_epsilon(m: int, r: int, v: int, delta: float, beta: float) -> float:
    """Largest ε that v correct guesses out of r (among m canaries) refute at confidence 1 − β.

    The one-run bound of Steinke, Nasr and Jagielski 2023 (Theorem 3): the supremum of the ε with
    one_run_p_value(m, r, v, ε, δ) ≤ β, found by bisection to ~1e-12 relative precision; 0 when
    even ε = 0 is not refuted. Raises MiakitError on counts out of range or β outside (0, 1).
    """
    _check_level("beta", beta)
    one_run_p_value(m, r, v, 0.0, delta)  # validates the counts
    return _largest_below(lambda eps: one_run_p_value(m, r, v, eps, delta), beta)


def one_run_guesses(
    scores: np.ndarray, members: np.ndarray, k_pos: int, k_neg: int
) -> tuple[int, int]:
    """(r, v): guess "in" for the k_pos highest scores and "out" for the k_neg lowest.

    scores: float [m]; members: bool [m] (the canaries' keep bits). Ties are broken by position
    (stable sort), which does not depend on membership. Raises MiakitError on shape mismatch,
    non-finite scores, or k_pos + k_neg > m.
    """
    scores, members = _scores_and_members(scores, members)
    m = len(scores)
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg > m:
        raise MiakitError(
            f"dp audit: need k+ ≥ 0, k− ≥ 0 and k+ + k− ≤ m={m}, got {k_pos}, {k_neg}"
        )
    order = np.argsort(scores, kind="stable")
    correct = int(members[order[m - k_pos :]].sum()) if k_pos else 0
    correct += int((~members[order[:k_neg]]).sum())
    return k_pos + k_neg, correct


@dataclass(frozen=True)
class OneRunAudit:
    """A one-run audit's result (Steinke, Nasr and Jagielski 2023); `asdict` gives audit.json."""

    epsilon_lower: float
    m: int
    k_pos: int
    k_neg: int
    guesses: int
    correct: int
    delta: float
    beta: float
    method: str = "one_run"

    def as_dict(self) -> dict:
        return asdict(self)


def one_run_audit(
    scores: np.ndarray, members: np.ndarray, k_pos: int, k_neg: int, delta: float, beta: float
) -> OneRunAudit:
    """The one-run ε lower bound of the canaries scored on one target model.

    scores: float [m], members: bool [m]. k± must be chosen without looking at these scores (on
    reference models or held-out canaries: see choose_guess_counts).
    """
    r, v = one_run_guesses(scores, members, k_pos, k_neg)
    m = len(scores)
    return OneRunAudit(
        epsilon_lower=one_run_epsilon(m, r, v, delta, beta),
        m=m,
        k_pos=k_pos,
        k_neg=k_neg,
        guesses=r,
        correct=v,
        delta=delta,
        beta=beta,
    )


def choose_guess_counts(
    scores: np.ndarray,
    members: np.ndarray,
    beta: float,
    fractions: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5),
) -> tuple[float, float]:
    """(k+/m, k−/m) that maximise the mean one-run bound over selection sets (reference models'
    canaries, or held-out canaries), to be applied as fractions to the audited canaries.

    scores: float [S, m'] and members: bool [S, m'] (S selection sets, ideally of the audited
    set's size, since the best fractions depend on it; [m'] is one set). Every pair of fractions
    with sum ≤ 1 and at least one guess is tried, each scored by its bound at δ = 0 (fast, and any
    rule that does not look at the audited scores keeps the audit valid); ties go to the first
    pair in order. Raises MiakitError on shape mismatch or when no pair makes a guess.
    """
    scores, members = np.atleast_2d(scores), np.atleast_2d(members)
    sets = [_scores_and_members(s, mem) for s, mem in zip(scores, members, strict=True)]
    m = scores.shape[1]
    best, best_pair = -1.0, None
    for f_pos in fractions:
        for f_neg in fractions:
            k_pos, k_neg = round(f_pos * m), round(f_neg * m)
            if k_pos + k_neg == 0 or k_pos + k_neg > m:
                continue
            eps = np.mean(
                [
                    one_run_epsilon(m, *one_run_guesses(s, mem, k_pos, k_neg), 0.0, beta)
                    for s, mem in sets
                ]
            )
            if eps > best:
                best, best_pair = eps, (f_pos, f_neg)
    if best_pair is None:
        raise MiakitError("dp audit: no pair of guess fractions makes a guess")
    return best_pair


# ---------------------------------------------------------------- many runs


def many_run_audit(
    select_scores: np.ndarray,
    select_members: np.ndarray,
    eval_scores: np.ndarray,
    eval_members: np.ndarray,
    delta: float,
    beta: float,
) -> OneRunAudit:
    """The one-run bound (Steinke, Nasr and Jagielski 2023, Theorem 3) over the pooled
    (target, canary) pairs of the evaluation targets, with guess fractions chosen on the
    selection targets' pairs (choose_guess_counts), applied to the evaluation pairs as top-k+ and
    bottom-k− over all of them.

    Scores: float [T, m] (or flat), members: bool of the same shape. Sound whatever the
    correlation of a model's canary scores, provided each pair's keep bit is an independent fair
    coin and the scores are computed without the evaluation targets' keep bits (each score is a
    function of the trained models, and of keep bits outside the audited pairs). The result's m
    is the number of evaluation pairs and its method "many_runs". Raises MiakitError on shape
    mismatch, non-finite scores, δ outside [0, 1) or β outside (0, 1).
    """
    _check_level("beta", beta)
    _check_level("delta", delta, low_open=False)
    s_sel, m_sel = _scores_and_members(select_scores, select_members)
    s_ev, m_ev = _scores_and_members(eval_scores, eval_members)
    f_pos, f_neg = choose_guess_counts(s_sel, m_sel, beta)
    size = len(s_ev)
    k_pos = round(f_pos * size)
    k_neg = min(round(f_neg * size), size - k_pos)
    audit = one_run_audit(s_ev, m_ev, k_pos, k_neg, delta, beta)
    return OneRunAudit(**(audit.as_dict() | {"method": "many_runs"}))


# ---------------------------------------------------------------- independent trials, Gaussian DP


def _scores_and_members(scores, members) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    members = np.asarray(members).ravel()
    if scores.shape != members.shape:
        raise MiakitError(
            f"dp audit: scores {scores.shape} and membership {members.shape} differ in shape"
        )
    if members.dtype != bool:
        if not np.isin(members, (0, 1)).all():
            raise MiakitError("dp audit: membership must be boolean (or 0/1)")
        members = members.astype(bool)
    if not np.isfinite(scores).all():
        raise MiakitError("dp audit: scores contain NaN or infinity")
    return scores, members


def _counts(scores, members) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Thresholds t (the distinct scores, plus +inf) and, for the test "member iff score ≥ t",
    true positives and false positives at each; then the member and non-member counts."""
    thresholds = np.append(np.unique(scores), np.inf)
    pos = np.sort(scores[members])
    neg = np.sort(scores[~members])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    return thresholds, tp, fp, len(pos), len(neg)


def _lower_rate(successes, trials, level):
    """One-sided Clopper–Pearson lower bound at confidence 1 − level (0 when there are none)."""
    successes = np.asarray(successes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bound = stats.beta.ppf(level, np.maximum(successes, 1), trials - successes + 1)
    return np.where(successes > 0, bound, 0.0)


def _upper_rate(successes, trials, level):
    """One-sided Clopper–Pearson upper bound at confidence 1 − level (1 when all succeed)."""
    return 1.0 - _lower_rate(trials - np.asarray(successes), trials, level)


def _rate_bounds(tp, fp, n_pos, n_neg, beta):
    """TPR_lo, FPR_hi, TNR_lo, FNR_hi at each threshold; each one-sided at β/2, so both TPR ≥ TPR_lo
    and FPR ≤ FPR_hi hold with probability ≥ 1 − β (and TNR_lo = 1 − FPR_hi, FNR_hi = 1 − TPR_lo)."""
    tpr_lo = _lower_rate(tp, n_pos, beta / 2)
    fpr_hi = _upper_rate(fp, n_neg, beta / 2)
    return tpr_lo, fpr_hi, 1.0 - fpr_hi, 1.0 - tpr_lo


def _epsilon_bounds(tp, fp, n_pos, n_neg, delta, beta) -> np.ndarray:
    tpr_lo, fpr_hi, tnr_lo, fnr_hi = _rate_bounds(tp, fp, n_pos, n_neg, beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.log(np.maximum(tpr_lo - delta, 0.0)) - np.log(fpr_hi)
        mirror = np.log(np.maximum(tnr_lo - delta, 0.0)) - np.log(fnr_hi)
    bound = np.fmax(direct, mirror)
    return np.maximum(np.nan_to_num(bound, nan=0.0, neginf=0.0), 0.0)


def _mu_bounds(tp, fp, n_pos, n_neg, beta) -> np.ndarray:
    tpr_lo, fpr_hi, tnr_lo, fnr_hi = _rate_bounds(tp, fp, n_pos, n_neg, beta)
    with np.errstate(invalid="ignore"):
        direct = special.ndtri(tpr_lo) - special.ndtri(fpr_hi)
        mirror = special.ndtri(tnr_lo) - special.ndtri(fnr_hi)
    bound = np.fmax(direct, mirror)
    return np.maximum(np.nan_to_num(bound, nan=0.0, neginf=0.0, posinf=0.0), 0.0)


@dataclass(frozen=True)
class ThresholdAudit:
    """A many-run audit's result: bounds at thresholds chosen on the selection part, computed on
    the evaluation part; `asdict` gives audit.json."""

    epsilon_lower: float
    epsilon_threshold: float
    mu_lower: float
    mu_threshold: float
    epsilon_from_mu: float
    n_members: int
    n_nonmembers: int
    delta: float
    beta: float
    method: str = "many_runs"

    def as_dict(self) -> dict:
        return asdict(self)


def threshold_audit(
    select_scores: np.ndarray,
    select_members: np.ndarray,
    eval_scores: np.ndarray,
    eval_members: np.ndarray,
    delta: float,
    beta: float,
) -> ThresholdAudit:
    """ε and μ lower bounds from a threshold test, the threshold chosen on separate data.

    Jagielski, Ullman and Oprea 2020 (Section 3) and Nasr et al. 2021 (Section 4.1): at the
    threshold t that maximises the bound on (select_scores, select_members), the evaluation part
    gives TPR_lo and FPR_hi (one-sided Clopper–Pearson at β/2 each) and
    ε ≥ max(ln((TPR_lo − δ)/FPR_hi), ln((TNR_lo − δ)/FNR_hi)); likewise, at its own threshold,
    μ ≥ max(Φ⁻¹(TPR_lo) − Φ⁻¹(FPR_hi), Φ⁻¹(TNR_lo) − Φ⁻¹(FNR_hi)) (Dong, Roth and Su 2022,
    trade-off function G_μ). Each bound holds with probability ≥ 1 − β when the evaluation
    trials are independent of each other and of the selection part (one canary per model, as in
    Jagielski et al.; with many canaries per model use many_run_audit for ε). epsilon_from_mu is the ε at δ
    of a μ_lower-GDP mechanism (gdp_epsilon): an estimate that assumes a Gaussian trade-off curve,
    not a bound.

    Scores: float [n], members: bool [n] (flattened if given as [T, N]). Raises MiakitError on
    shape mismatch, non-finite scores, δ outside [0, 1), β outside (0, 1), or a part without
    members or non-members.
    """
    _check_level("beta", beta)
    _check_level("delta", delta, low_open=False)
    parts = []
    for name, s, mem in (
        ("selection", select_scores, select_members),
        ("evaluation", eval_scores, eval_members),
    ):
        s, mem = _scores_and_members(s, mem)
        if mem.all() or not mem.any():
            raise MiakitError(f"dp audit: the {name} part needs both members and non-members")
        parts.append((s, mem))
    (s_sel, m_sel), (s_ev, m_ev) = parts
    thresholds, tp, fp, n_pos, n_neg = _counts(s_sel, m_sel)
    t_eps = float(thresholds[np.argmax(_epsilon_bounds(tp, fp, n_pos, n_neg, delta, beta))])
    t_mu = float(thresholds[np.argmax(_mu_bounds(tp, fp, n_pos, n_neg, beta))])
    n_pos, n_neg = int(m_ev.sum()), int((~m_ev).sum())
    results = []
    for t in (t_eps, t_mu):
        tp_ev = np.array([int((s_ev[m_ev] >= t).sum())])
        fp_ev = np.array([int((s_ev[~m_ev] >= t).sum())])
        results.append((tp_ev, fp_ev))
    eps = float(_epsilon_bounds(*results[0], n_pos, n_neg, delta, beta)[0])
    mu = float(_mu_bounds(*results[1], n_pos, n_neg, beta)[0])
    return ThresholdAudit(
        epsilon_lower=eps,
        epsilon_threshold=t_eps,
        mu_lower=mu,
        mu_threshold=t_mu,
        epsilon_from_mu=gdp_epsilon(mu, delta) if delta > 0 else math.inf if mu > 0 else 0.0,
        n_members=n_pos,
        n_nonmembers=n_neg,
        delta=delta,
        beta=beta,
    )


def gdp_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of a μ-GDP mechanism: Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2).

    Dong, Roth and Su 2022, Corollary 2.13. μ > 0, ε ≥ 0; the second term is computed in log space.
    Raises MiakitError on μ ≤ 0 or ε < 0.
    """
    if not (mu > 0 and epsilon >= 0):
        raise MiakitError(f"dp audit: need μ > 0 and ε ≥ 0, got μ={mu}, ε={epsilon}")
    first = special.ndtr(-epsilon / mu + mu / 2)
    second = math.exp(epsilon + special.log_ndtr(-epsilon / mu - mu / 2))
    return float(max(first - second, 0.0))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest ε with a μ-GDP mechanism (ε, δ)-DP (Dong, Roth and Su 2022, Corollary 2.13).

    μ ≥ 0, δ in (0, 1). Returns 0 for μ = 0 or when δ(0) ≤ δ. Raises MiakitError otherwise.
    """
    _check_level("delta", delta)
    if mu < 0 or not math.isfinite(mu):
        raise MiakitError(f"dp audit: need a finite μ ≥ 0, got {mu}")
    if mu == 0 or gdp_delta(mu, 0.0) <= delta:
        return 0.0
    high = 1.0
    while gdp_delta(mu, high) > delta:
        high *= 2
    return float(optimize.brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, high, xtol=1e-12))
