"""The with/without experiment: statistics against independent computations, and a record that
is exposed on purpose."""

import json

import numpy as np
import pytest
from scipy.stats import binom, norm
from typer.testing import CliRunner

from miakit import single_point
from miakit.cli import app
from miakit.config import SinglePointConfig, load_config
from miakit.data import DATASETS, Pool, load_pool
from miakit.errors import MiakitError
from miakit.evaluate.single_point import clopper_pearson, error_rate, power_at_alpha


def test_thresholds_and_power_on_normals_with_known_power():
    rng = np.random.default_rng(0)
    mu_with, mu_without, alpha = 0.0, 2.0, 0.05
    result = power_at_alpha(
        rng.normal(mu_with, 1, 40_000), rng.normal(mu_without, 1, 40_000), alpha, "loss"
    )
    threshold = mu_without + norm.ppf(alpha)  # 2 − 1.645
    assert result.threshold_gaussian == pytest.approx(threshold, abs=0.02)
    assert result.threshold_empirical == pytest.approx(threshold, abs=0.03)
    known_power = norm.cdf(threshold - mu_with)  # ≈ 0.639
    assert result.power_empirical == pytest.approx(known_power, abs=0.015)
    assert result.power_gaussian == pytest.approx(known_power, abs=0.015)
    assert result.power_ci_low < known_power < result.power_ci_high


def test_empirical_threshold_is_the_interpolated_alpha_quantile_by_hand():
    without = np.array([5.0, 1.0, 3.0, 2.0, 4.0])  # sorted 1 2 3 4 5; position (5−1)·0.25 = 1
    with_ = np.array([0.5, 1.5, 2.5, 9.0])
    result = power_at_alpha(with_, without, 0.25, "loss")
    assert result.threshold_empirical == 2.0
    assert result.power_empirical == 0.5  # 0.5 and 1.5 fall below 2
    # Gaussian: mean 3, sample std sqrt(2.5)
    assert result.threshold_gaussian == pytest.approx(3 + np.sqrt(2.5) * norm.ppf(0.25))


def test_logit_fit_thresholds_phi_and_maps_back_to_a_nonnegative_loss():
    """Issue 17, item 7: φ of with/without ~ N(6, 1.5²) and N(3, 1.5²); the losses softplus(−φ)
    are skewed, the raw-loss Gaussian puts its threshold below 0 (power 0), the φ fit does not."""
    rng = np.random.default_rng(4)
    alpha, n = 0.05, 20_000
    phi_with, phi_without = rng.normal(6, 1.5, n), rng.normal(3, 1.5, n)
    with_ = np.log1p(np.exp(-phi_with))  # the loss −log p of p = 1 / (1 + e^−φ)
    without = np.log1p(np.exp(-phi_without))
    raw = power_at_alpha(with_, without, alpha, "loss")
    assert raw.threshold_gaussian < 0 and raw.power_gaussian < 0.01
    fit = power_at_alpha(with_, without, alpha)
    t_phi = phi_without.mean() + phi_without.std(ddof=1) * norm.ppf(1 - alpha)
    assert fit.threshold_gaussian == pytest.approx(np.log1p(np.exp(-t_phi)), rel=1e-9)
    assert fit.mean_without == pytest.approx(phi_without.mean(), rel=1e-9)
    known_power = norm.sf(3 + 1.5 * norm.ppf(1 - alpha), loc=6, scale=1.5)  # ≈ 0.64
    assert fit.power_gaussian == pytest.approx(known_power, abs=0.015)
    assert fit.power_empirical == pytest.approx(known_power, abs=0.015)
    assert fit.gaussian_fit == "logit" and raw.gaussian_fit == "loss"
    # the fitted density integrates to 1 over losses (change of variables from φ)
    grid = np.linspace(1e-6, 2.0, 400_001)
    assert np.trapezoid(fit.gaussian_density(grid, "without"), grid) == pytest.approx(1, abs=2e-3)


def test_logit_fit_refuses_a_loss_of_zero():
    with pytest.raises(MiakitError, match="gaussian_fit: loss"):
        power_at_alpha(np.array([0.0, 0.1]), np.array([0.5, 0.7]), 0.1)


def test_clopper_pearson_tails_hold_exactly():
    low, high = clopper_pearson(7, 20)
    assert binom.sf(6, 20, low) == pytest.approx(0.025, rel=1e-6)  # P[X ≥ 7 | low]
    assert binom.cdf(7, 20, high) == pytest.approx(0.025, rel=1e-6)  # P[X ≤ 7 | high]
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0


def test_error_rate_by_hand():
    # threshold 1: with-losses 0.5 (right), 2 (wrong); without-losses 3 (right), 0.2 (wrong), 4
    assert error_rate(np.array([0.5, 2.0]), np.array([3.0, 0.2, 4.0]), 1.0) == pytest.approx(2 / 5)


def _mislabeled_digits(data_dir=None) -> Pool:
    """Digits plus one record on purpose: a copy of record 0 with a wrong label, at the end."""
    pool = load_pool("digits")
    x = np.concatenate([pool.x, pool.x[:1]])
    y = np.concatenate([pool.y, [(pool.y[0] + 1) % 10]])
    return Pool("digits-mislabeled", x, y, 10)


def _quick_config(**targets) -> SinglePointConfig:
    return load_config(
        None,
        [
            "data.name=digits-mislabeled",
            "model.hidden=[64]",
            "train.epochs=30",
            "train.lr=0.005",
            "train.batch_size=32",
            "n_iterations=16",
            "subset_size=300",
            "eval_pairs=2",
            "save_plots=false",
            f"targets.indices={targets['indices']}",
        ],
        schema=SinglePointConfig,
    )


def test_a_mislabeled_duplicate_is_clearly_more_exposed(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "digits-mislabeled", _mislabeled_digits)
    exposed, typical = 1797, 20
    results = single_point.run_single_point(_quick_config(indices=[exposed, typical]), tmp_path)
    power = {r.index: r.power.power_empirical for r in results}
    assert results[0].index == exposed  # ranked first
    assert power[exposed] >= 0.9
    assert power[exposed] > power[typical] + 0.5
    assert (tmp_path / "summary.csv").read_text().splitlines()[1].startswith("1,1797,")


def test_interrupted_experiment_resumes_without_redoing_rounds(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, "digits-mislabeled", _mislabeled_digits)
    config = _quick_config(indices=[3])
    calls = []
    real = single_point._Trainer.losses

    def counting(self, rows, round_seed):
        calls.append(round_seed)
        return real(self, rows, round_seed)

    monkeypatch.setattr(single_point._Trainer, "losses", counting)

    def stop_after_three(done, total):
        if done == 3:
            raise KeyboardInterrupt

    epochs = []
    with pytest.raises(KeyboardInterrupt):
        single_point.run_single_point(
            config, tmp_path, on_round=stop_after_three, on_epoch=lambda *e: epochs.append(e)
        )
    # three rounds of two models each, every epoch of each reported
    assert epochs == [(e, 30) for e in range(1, 31)] * 6
    calls.clear()
    resumed = single_point.run_single_point(config, tmp_path)
    assert sorted(set(calls)) == list(range(3, 18))  # rounds 0–2 were kept
    fresh = single_point.run_single_point(config, tmp_path / "fresh")
    np.testing.assert_array_equal(resumed[0].losses_with, fresh[0].losses_with)


def test_bad_targets_are_clear_errors(tmp_path):
    result = CliRunner().invoke(
        app, ["single-point", "--out", str(tmp_path), "--set", "targets.indices=[99999]"]
    )
    assert result.exit_code == 2 and "outside the pool" in result.output
    result = CliRunner().invoke(app, ["single-point", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no record to test" in result.output


@pytest.mark.slow
def test_quick_config_runs_as_the_readme_shows(tmp_path):
    result = CliRunner().invoke(
        app, ["single-point", "--config", "configs/single_point_quick.yaml", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "summary.csv").read_text().splitlines()) == 5
    assert len(list(tmp_path.glob("hist_*.png"))) == 4


def test_top_k_records_come_from_an_earlier_runs_lt_iqr_scores(tmp_path):
    """targets.from_run: the k records with the highest mean LT-IQR score over the run's targets,
    after the explicit indices, skipping those already chosen."""
    pool = load_pool("digits")
    run = tmp_path / "run"
    (run / "scores").mkdir(parents=True)
    (run / "pool.json").write_text(json.dumps({"fingerprint": pool.fingerprint()}))
    scores = np.zeros((2, pool.num_records))
    scores[:, [40, 7, 900, 12]] = [[9.0, 8.0, 7.0, 1.0], [9.0, 8.0, 7.0, 30.0]]  # means 9 8 7 15.5
    np.save(run / "scores" / "lt-iqr.npy", scores)
    config = load_config(
        None,
        ["targets.indices=[40]", "targets.top_k=3", f"targets.from_run={run}"],
        schema=SinglePointConfig,
    )
    assert single_point.choose_targets(config, pool) == [40, 12, 7, 900]
    other = Pool("digits-shifted", pool.x + 1, pool.y, 10)
    with pytest.raises(MiakitError, match="other data"):
        single_point.choose_targets(config, other)
