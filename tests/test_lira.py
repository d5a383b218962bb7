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


def expected_scores(variant, phi, keep, target, center=np.median, tail="one-sided"):
    """Per record, in loops: the formulas of Carlini et al. with scipy's densities."""
    refs = [m for m in range(len(keep)) if m != target]
    all_in = np.concatenate([phi[m, keep[m]].ravel() for m in refs])
    all_out = np.concatenate([phi[m, ~keep[m]].ravel() for m in refs])
    out = []
    for n in range(keep.shape[1]):
        x = phi[target, n]  # [A]
        ins = np.array([phi[m, n] for m in refs if keep[m, n]])  # [k, A]
        outs = np.array([phi[m, n] for m in refs if not keep[m, n]])
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
def test_matches_float64_formulas(variant, augmentations):
    signals, phi, keep = gaussian_signals(augmentations=augmentations)
    target = 3
    refs = [m for m in range(len(keep)) if m != target]
    got = make_attack(variant).score(signals, target, refs)
    np.testing.assert_allclose(got, expected_scores(variant, phi, keep, target), rtol=1e-9)


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


def test_record_with_one_in_reference_uses_the_global_spread():
    keep = balanced_keep_matrix(4, 10)
    phi = np.random.default_rng(0).normal(size=(4, 10, 1))
    signals = Signals.from_arrays(binary_logits_from_log_odds(phi), np.ones(10, np.int64), keep)
    # with 3 references and 2 IN per record, each record has 1 or 2 IN references
    scores = make_attack("lira-online").score(signals, 0, [1, 2, 3])
    assert np.isfinite(scores).all()
    n = int(np.flatnonzero(keep[0])[0])  # IN for the target → only one IN reference
    ins = [phi[m, n, 0] for m in (1, 2, 3) if keep[m, n]]
    outs = [phi[m, n, 0] for m in (1, 2, 3) if not keep[m, n]]
    all_in = np.concatenate([phi[m, keep[m], 0] for m in (1, 2, 3)])
    expected = norm.logpdf(phi[0, n, 0], np.median(ins), all_in.std()) - norm.logpdf(
        phi[0, n, 0], np.median(outs), np.std(outs)
    )
    assert scores[n] == pytest.approx(expected)


def test_record_without_in_reference_is_a_clear_error():
    keep = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], dtype=bool)
    keep[:, 0] = [True, False, False, False]  # record 0 is IN only for model 0
    phi = np.zeros((4, 2, 1))
    signals = Signals.from_arrays(binary_logits_from_log_odds(phi), np.ones(2, np.int64), keep)
    with pytest.raises(MiakitError, match="IN reference"):
        make_attack("lira-online").score(signals, 0, [1, 2, 3])
