"""Canaries in the pool and keep matrix, and the audit-dp stage end to end on digits."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from miakit import pipeline
from miakit.cli import app
from miakit.config import load_config
from miakit.data.canaries import canary_keep, canary_records, insert_canaries, redraw_slack
from miakit.data.pool import Pool
from miakit.errors import MiakitError
from miakit.plan import load_plan
from miakit.report.compare import privacy_utility_table, summary_table
from miakit.report.dp_audit import dp_region_tpr
from miakit.report.runs import load_run
from miakit.store import RunDir


def _pool(images: bool) -> Pool:
    rng = np.random.default_rng(0)
    x = (
        rng.integers(0, 256, (50, 4, 4, 1), dtype=np.uint8)
        if images
        else rng.normal(size=(50, 3)).astype(np.float32)
    )
    return Pool("toy", x, rng.integers(0, 5, 50), 5)


@pytest.mark.parametrize("images", [True, False])
def test_insert_canaries_changes_only_the_canaries(images):
    pool = _pool(images)
    records = canary_records(50, 10, np.random.default_rng(1))
    assert len(set(records.tolist())) == 10
    others = np.setdiff1d(np.arange(50), records)
    wrong = insert_canaries(pool, records, "mislabelled", np.random.default_rng(2))
    assert (wrong.y[records] != pool.y[records]).all()
    assert (wrong.y[others] == pool.y[others]).all() and (wrong.x == pool.x).all()
    natural = insert_canaries(pool, records, "natural", np.random.default_rng(2))
    assert (natural.y == pool.y).all() and (natural.x == pool.x).all()
    noise = insert_canaries(pool, records, "noise", np.random.default_rng(2))
    assert noise.x.dtype == pool.x.dtype
    assert all((noise.x[r] != pool.x[r]).any() for r in records)
    assert (noise.x[others] == pool.x[others]).all()
    assert pool.fingerprint() != wrong.fingerprint()
    with pytest.raises(MiakitError, match="pool has 50"):
        canary_records(50, 51, np.random.default_rng(0))


def test_canary_keep_columns_are_fair_independent_coins():
    keep = np.zeros((400, 30), dtype=bool)
    records = np.array([3, 7, 20])
    drawn = canary_keep(keep, records, np.random.default_rng(5))
    assert not drawn[:, np.setdiff1d(np.arange(30), records)].any()
    col = drawn[:, records]
    # each bit a fair coin: 400 draws per canary, mean within 4 standard errors of 1/2
    assert np.abs(col.mean(axis=0) - 0.5).max() < 4 * 0.5 / np.sqrt(400)
    # independent across canaries: the correlation of two columns near 0
    assert abs(np.corrcoef(col[:, 0], col[:, 1])[0, 1]) < 4 / np.sqrt(400)


def test_canary_keep_redraws_constant_columns_and_bounds_the_slack():
    # 12 models, 5 canaries: slack 5 · 2^-11; over many draws no column is ever constant
    keep = np.zeros((12, 8), dtype=bool)
    for seed in range(300):
        bits = canary_keep(keep, np.arange(5), np.random.default_rng(seed))[:, :5]
        assert bits.any(axis=0).all() and (~bits).any(axis=0).all()
    assert redraw_slack(12, 5) == pytest.approx(5 / 2048)
    with pytest.raises(MiakitError, match="more than 8 models"):
        canary_keep(np.zeros((8, 300), bool), np.arange(300), np.random.default_rng(0))


def test_plan_with_canaries_keeps_the_split_elsewhere(tmp_path, tiny_config):
    config = tiny_config.model_copy(deep=True)
    config.dp_audit.canaries.count = 100
    config.split.num_models = 16
    run = RunDir(tmp_path / "run")
    planned = pipeline.plan(config, run)
    plain = pipeline.plan(tiny_config, RunDir(tmp_path / "plain"))  # the labels only
    changed = np.flatnonzero(planned.pool.y != plain.pool.y)
    assert len(changed) == 100  # every canary mislabelled, nothing else touched
    others = np.setdiff1d(np.arange(1797), changed)
    assert (planned.keep[:, others].sum(axis=0) == 8).all()  # still balanced outside canaries
    assert load_plan(run).pool.fingerprint() == planned.pool.fingerprint()
    np.testing.assert_array_equal(np.load(run.keep), planned.keep)


@pytest.mark.slow
def test_audit_dp_end_to_end(tmp_path, one_thread):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["audit", "--out", str(out), "--set", "split.num_models=16",
         "--set", "model.hidden=[64]", "--set", "train.epochs=30", "--set", "train.lr=0.01",
         "--set", "attacks=[loss, lira-online]", "--set", "dp_audit.canaries.count=200"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    audit = json.loads((out / "audit.json").read_text())
    assert audit["canaries"] == {"count": 200, "kind": "mislabelled"}
    assert len(set(audit["canary_records"])) == 200
    assert audit["accountant_epsilon"] is None and audit["beta"] == 0.05
    assert audit["confidence"] == pytest.approx(0.95 - 200 * 2.0**-15)
    for name in ["loss", "lira-online"]:
        one = audit["attacks"][name]["one_run"]
        assert len(one["per_target"]) == 16
        row = one["per_target"][0]
        assert row["guesses"] == row["k_pos"] + row["k_neg"] and row["m"] == 200
        assert 0 <= row["correct"] <= row["guesses"]
        many = audit["attacks"][name]["many_runs"]
        assert many["method"] == "many_runs" and many["m"] == 8 * 200
        assert many["epsilon_lower"] >= 0 and many["independent_trials"]["mu_lower"] >= 0
    # a non-private MLP memorises mislabelled digits: a clearly positive bound
    assert audit["attacks"]["lira-online"]["one_run"]["epsilon_lower"] > 0.5
    again = CliRunner().invoke(app, ["audit-dp", str(out)])
    assert again.exit_code == 0, again.output
    assert "lira-online" in again.output
    assert json.loads((out / "audit.json").read_text()) == audit
    assert "Privacy audit: ε lower bounds" in (out / "report.html").read_text()
    data = load_run(out)
    table = summary_table([data], ["a"], privacy_utility_table([data], ["a"])).set_index("attack")
    bound = audit["attacks"]["lira-online"]["one_run"]["epsilon_lower"]
    assert table.loc["lira-online", "ε ≥ (one run)"] == f"{bound:.3g}"


def test_dp_region_tpr_matches_the_two_halfplanes():
    # (ε, δ)-DP: TPR ≤ e^ε FPR + δ and TNR ≤ e^ε FNR + δ; check the curve at hand-picked points
    eps, delta = np.log(3.0), 0.01
    for fpr in [0.0, 0.05, 0.2, 0.6, 1.0]:
        want = min(3 * fpr + 0.01, 1 - (1 - fpr - 0.01) / 3, 1.0)
        assert dp_region_tpr(np.array([fpr]), eps, delta)[0] == pytest.approx(max(want, 0.0))


def test_audit_dp_without_canaries_is_an_error(tmp_path, tiny_config):
    run = RunDir(tmp_path / "run")
    pipeline.plan(tiny_config, run)
    with pytest.raises(MiakitError, match="no canaries"):
        pipeline.audit_dp(run, load_config(None, []))


@pytest.mark.slow
def test_audit_dp_bound_stays_below_the_accountant_for_dp_sgd(tmp_path, one_thread):
    """Soundness, small case: DP-SGD at ε = 1; no measured bound may exceed the accountant's ε."""
    config = load_config(
        None,
        ["split.num_models=16", "model.hidden=[32]", "train.epochs=4", "train.lr=0.01",
         "attacks=[loss, lira-online]", "dp_audit.canaries.count=200",
         "defences.dp.enabled=true", "defences.dp.target_epsilon=1.0"],
    )  # fmt: skip
    run = RunDir(tmp_path / "run")
    planned = pipeline.plan(config, run)
    pipeline.train(planned, run)
    pipeline.query(planned, run)
    pipeline.attack(run, config)
    audit = pipeline.audit_dp(run, config)
    assert 0.5 < audit["accountant_epsilon"] <= 1.0
    for figures in audit["attacks"].values():
        assert figures["one_run"]["epsilon_lower"] <= audit["accountant_epsilon"]
        assert figures["many_runs"]["epsilon_lower"] <= audit["accountant_epsilon"]


def test_canaries_train_batched_with_loss_traces_and_every_attack_scores_them(tmp_path, one_thread):
    """Canaries are pool records like any other for the batched trainer, loss traces and the
    attacks: each model's trace shows its IN canaries (mislabelled, so only memorised) with a
    lower final loss than its OUT ones, and audit.json holds a bound for every attack."""
    config = load_config(
        None,
        [
            "split.num_models=16", "model.hidden=[64]", "train.epochs=20", "train.lr=0.01",
            "train.batched=true", "execution.models_per_task=16", "train.record_trace=true",
            "attacks=[loss, lira-online, lt-iqr]", "dp_audit.canaries.count=100",
        ],
    )  # fmt: skip
    run = RunDir(tmp_path / "run")
    pipeline.audit(config, run)
    audit = json.loads((run.root / "audit.json").read_text())
    canaries = np.array(audit["canary_records"])
    keep = np.load(run.keep)
    memorised = 0
    for m in range(16):
        last = np.load(run.trace(m))[-1].astype(np.float64)
        assert last.shape == (1797,)
        inside, outside = canaries[keep[m, canaries]], canaries[~keep[m, canaries]]
        memorised += last[inside].mean() < last[outside].mean()
    assert memorised == 16
    assert set(audit["attacks"]) == {"loss", "lira-online", "lt-iqr"}
