"""LiRA against float64 computations of the paper's formulas written here, and an analytic case.

Synthetic signals: binary logits [0, φ] with label 1, so the LiRA signal of each query is exactly φ.
"""

import numpy as np
import pytest
from scipy.stats import norm

from miakit.attacks import make_attack
from miakit.errors import MiakitError
from miakit.evaluate.roc import roc_curve
from miakit.signals import Signals

from .attack_inputs import chosen_references
from .synthetic import balanced_keep_matrix, binary_logits_from_log_odds

pytestmark = [
    pytest.mark.attack("lira-online"),
    pytest.mark.attack("lira-online-fixed"),
    pytest.mark.attack("lira-offline"),
    pytest.mark.attack("lira-offline-fixed"),
    pytest.mark.attack("lira-global"),
]


def gaussian_signals(num_models=16, num_records=60, augmentations=1, seed=0, mu_in=1.0, sd=1.0):
    """φ ~ N(μ_in, sd²) for IN pairs and N(0, sd²) for OUT, with per-record offsets."""
    rng = np.random.default_rng(seed)
    keep = balanced_keep_matrix(num_models, num_records, seed)
    offset = rng.normal(0, 2, (1, num_records, 1))
    phi = offset + np.where(keep[..., None], mu_in, 0.0)
    phi = phi + rng.normal(0, sd, (num_models, num_records, augmentations))
    labels = np.ones(num_records, dtype=np.int64)
    return Signals.from_arrays(binary_logits_from_log_odds(phi), labels, keep), phi, keep


def expected_scores(
    variant, phi, keep, target, center=np.median, tail="one-sided", counts="equal", design=None
):  # fmt: skip
    """Per record, in loops: the formulas of Carlini et al. with scipy's densities, against every
    other model. `design`: the reference models the equal counts are taken over
    (`chosen_references`); default every other model (the target is not one of the references),
    all models for leave-one-out."""
    refs = [m for m in range(len(keep)) if m != target]
    all_in = np.concatenate([phi[m, keep[m]].ravel() for m in refs])
    all_out = np.concatenate([phi[m, ~keep[m]].ravel() for m in refs])
    sides = ("IN", "OUT") if variant.startswith("lira-online") else ("OUT",)
    out = []
    for n in range(keep.shape[1]):
        x = phi[target, n]  # [A]
        use = chosen_references(keep, n, target, refs if design is None else design, sides, counts)
        ins = np.array([phi[m, n] for m in use["IN"]])  # [k, A]
        outs = np.array([phi[m, n] for m in use["OUT"]])
        if variant == "lira-global":
            out.append(x.mean())
            continue
        if variant.startswith("lira-online"):
            s_in, s_out = (
                (all_in.std(), all_in.std())
                if "fixed" in variant
                else (ins.std(axis=0), outs.std(axis=0))
            )
            llr = norm.logpdf(x, center(ins, axis=0), s_in) - norm.logpdf(
                x, center(outs, axis=0), s_out
            )
            out.append(llr.mean())
        else:
            s_out = all_out.std() if "fixed" in variant else outs.std(axis=0)
            if tail == "one-sided":
                out.append(norm.logcdf(x, center(outs, axis=0), s_out).mean())
            else:
                out.append(-norm.logpdf(x, center(outs, axis=0), s_out).mean())
    return np.array(out)


@pytest.mark.parametrize(
    "variant",
    ["lira-online", "lira-online-fixed", "lira-offline", "lira-offline-fixed", "lira-global"],
)
@pytest.mark.parametrize("augmentations", [1, 18])
@pytest.mark.parametrize("counts", ["equal", "all"])
def test_matches_float64_formulas(variant, augmentations, counts):
    signals, phi, keep = gaussian_signals(augmentations=augmentations)
    target = 3
    refs = [m for m in range(len(keep)) if m != target]
    got = make_attack(variant, {"reference_counts": counts}).score(signals, target, refs)
    expected = expected_scores(variant, phi, keep, target, counts=counts)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_mean_centre_and_two_sided_offline_options():
    signals, phi, keep = gaussian_signals(augmentations=2)
    refs = list(range(1, len(keep)))
    online_mean = make_attack("lira-online", {"center": "mean"}).score(signals, 0, refs)
    np.testing.assert_allclose(
        online_mean, expected_scores("lira-online", phi, keep, 0, center=np.mean), rtol=1e-9
    )
    two_sided = make_attack("lira-offline", {"offline_tail": "two-sided"}).score(signals, 0, refs)
    np.testing.assert_allclose(
        two_sided, expected_scores("lira-offline", phi, keep, 0, tail="two-sided"), rtol=1e-9
    )


def test_leave_one_out_equals_scoring_each_target_alone():
    signals, _, _ = gaussian_signals(num_models=8)
    attack = make_attack("lira-online")
    loo = attack.score_leave_one_out(signals, [0, 5])
    for row, t in zip(loo, [0, 5], strict=True):
        # to rounding: leave-one-out removes the target's term from sums over all models
        np.testing.assert_allclose(
            row, attack.score(signals, t, [m for m in range(8) if m != t]), rtol=1e-12
        )


def test_online_reaches_the_analytic_optimum():
    """Equal-variance Gaussians: the best test has AUC Φ(|μ_in − μ_out| / (σ√2))."""
    mu_in, sd = 1.0, 1.0
    signals, _, keep = gaussian_signals(num_models=64, num_records=3000, mu_in=mu_in, sd=sd, seed=1)
    scores = make_attack("lira-online").score(signals, 0, list(range(1, 64)))
    optimum = norm.cdf(mu_in / (sd * np.sqrt(2)))
    auc = roc_curve(scores, keep[0]).auc()
    assert auc == pytest.approx(optimum, abs=0.025)
    # the offset per record (±2) hides membership from a global threshold
    global_auc = roc_curve(make_attack("lira-global").score(signals, 0, []), keep[0]).auc()
    assert global_auc < optimum - 0.1


def test_offline_one_sided_never_favours_low_signals():
    """A record far below its OUT mean is a non-member to the paper's test, a member to the code's."""
    signals, phi, keep = gaussian_signals()
    refs = list(range(1, len(keep)))
    n = int(np.flatnonzero(~keep[0])[0])
    low = phi.copy()
    low[0, n] -= 50
    low_signals = Signals.from_arrays(binary_logits_from_log_odds(low), signals.labels, keep)
    one = make_attack("lira-offline").score(low_signals, 0, refs)
    two = make_attack("lira-offline", {"offline_tail": "two-sided"}).score(low_signals, 0, refs)
    assert one[n] == one.min()
    assert two[n] == two.max()


@pytest.mark.parametrize("counts", ["equal", "all"])
def test_record_with_one_in_reference_uses_the_global_spread(counts):
    keep = balanced_keep_matrix(4, 10)
    phi = np.random.default_rng(0).normal(size=(4, 10, 1))
    signals = Signals.from_arrays(binary_logits_from_log_odds(phi), np.ones(10, np.int64), keep)
    # with 3 references and 2 IN per record, each record has 1 or 2 IN references (and 2 or 1
    # OUT ones); equal counts keep one of each, the first in model order
    scores = make_attack("lira-online", {"reference_counts": counts}).score(signals, 0, [1, 2, 3])
    assert np.isfinite(scores).all()
    n = int(np.flatnonzero(keep[0])[0])  # IN for the target → only one IN reference
    ins = [phi[m, n, 0] for m in (1, 2, 3) if keep[m, n]]
    outs = [phi[m, n, 0] for m in (1, 2, 3) if not keep[m, n]]
    all_in = np.concatenate([phi[m, keep[m], 0] for m in (1, 2, 3)])
    all_out = np.concatenate([phi[m, ~keep[m], 0] for m in (1, 2, 3)])
    sd_out = np.std(outs) if counts == "all" else all_out.std()
    expected = norm.logpdf(phi[0, n, 0], np.median(ins), all_in.std()) - norm.logpdf(
        phi[0, n, 0], np.median(outs if counts == "all" else outs[:1]), sd_out
    )
    assert scores[n] == pytest.approx(expected)


def test_record_without_in_reference_is_a_clear_error():
    keep = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], dtype=bool)
    keep[:, 0] = [True, False, False, False]  # record 0 is IN only for model 0
    phi = np.zeros((4, 2, 1))
    signals = Signals.from_arrays(binary_logits_from_log_odds(phi), np.ones(2, np.int64), keep)
    with pytest.raises(MiakitError, match="IN reference"):
        make_attack("lira-online").score(signals, 0, [1, 2, 3])


def spread_signals(keep, augmentations=3, seed=0):
    """φ of each record and view: a per-record offset, +0.25 where IN, plus the models' places
    on a grid of step 0.5, shuffled, and a jitter below 0.1, so a record's values lie at least
    0.15 apart: leave-one-out sums (`engine.LeftOut`) lose about 1e-16 · (removed value's
    distance / the spread of the rest)² of a spread, which random draws make 1e-12 at times."""
    rng = np.random.default_rng(seed)
    models, records = keep.shape
    grid = rng.permuted(
        np.broadcast_to(np.arange(models)[:, None, None], (models, records, augmentations)), axis=0
    )
    phi = rng.normal(0, 2, (1, records, 1)) + 0.25 * keep[..., None] + 0.5 * grid
    phi = phi + rng.uniform(0, 0.1, phi.shape)
    labels = np.ones(records, dtype=np.int64)
    return Signals.from_arrays(binary_logits_from_log_odds(phi), labels, keep), phi, keep


def reference_code_scores(phi, keep, target, shadows, online, fixed, sigma=None):
    """The rule of the LiRA release's plot.py (`generate_ours`, `generate_ours_offline`), written
    here as a plain loop for one target: of every record's IN and OUT φ among the shadow models
    (in model order), the first as many as the record with the fewest has, over all records;
    median centre, population std (per record, or of all the truncated values with fixed
    variance; `sigma` replaces that one), and the score averaged over views. Online: log N(φ;
    IN) − log N(φ; OUT); offline: −log N(φ; OUT) (the code's two-sided test)."""
    records = keep.shape[1]
    ins = [[phi[m, n] for m in shadows if keep[m, n]] for n in range(records)]  # lists of [A]
    outs = [[phi[m, n] for m in shadows if not keep[m, n]] for n in range(records)]
    in_size = min(len(x) for x in ins)
    out_size = min(len(x) for x in outs)
    ins = np.array([x[:in_size] for x in ins])  # [N, in_size, A]
    outs = np.array([x[:out_size] for x in outs])
    if fixed:
        spread = ins.std() if online else outs.std()
        sd_in = sd_out = spread if sigma is None else sigma
    else:
        sd_in, sd_out = ins.std(axis=1), outs.std(axis=1)
    scores = np.empty(records)
    for n in range(records):
        x = phi[target, n]
        log_out = norm.logpdf(x, np.median(outs[n], axis=0), sd_out if fixed else sd_out[n])
        if online:
            log_in = norm.logpdf(x, np.median(ins[n], axis=0), sd_in if fixed else sd_in[n])
            scores[n] = (log_in - log_out).mean()
        else:
            scores[n] = -log_out.mean()
    return scores


@pytest.mark.parametrize(
    "variant", ["lira-online", "lira-online-fixed", "lira-offline", "lira-offline-fixed"]
)
def test_equal_counts_are_the_reference_codes_truncation_on_a_balanced_split(variant):
    """Leave-one-out on a balanced split (the release's setting: each target against the M − 1
    other models), and a target outside a balanced set of shadows: the scores are the reference
    code's to 1e-12. Leave-one-out, its truncation cuts each side to M/2 − 1 models and so does
    `reference_counts: equal`; only the fixed spread differs, all references' φ here (`sigma`)."""
    online, fixed = variant.startswith("lira-online"), variant.endswith("fixed")
    options = {} if online else {"offline_tail": "two-sided"}
    signals, phi, keep = spread_signals(balanced_keep_matrix(8, 50, seed=2), seed=2)
    loo = make_attack(variant, options).score_targets(signals, range(8), None)
    for t in range(8):
        shadows = [m for m in range(8) if m != t]
        side = keep[shadows] == online  # all IN φ (online) or OUT φ (offline) of the shadows
        sigma = phi[shadows][side].std() if fixed else None
        expected = reference_code_scores(phi, keep, t, shadows, online, fixed, sigma)
        np.testing.assert_allclose(loo[t], expected, rtol=1e-12, atol=1e-12)
    # shadows 1..8 balanced among themselves, target 0 outside them: nothing is truncated
    keep = np.concatenate([balanced_keep_matrix(2, 50, seed=3)[:1], balanced_keep_matrix(8, 50)])
    signals, phi, keep = spread_signals(keep, seed=3)
    got = make_attack(variant, options).score(signals, 0, range(1, 9))
    expected = reference_code_scores(phi, keep, 0, range(1, 9), online, fixed)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
