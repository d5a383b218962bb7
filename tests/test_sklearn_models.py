"""scikit-learn estimators as audited models (model.arch sklearn): breast cancer, skops files,
class mapping, the probability floor, plan-time checks, and attack scores recomputed here from
the reloaded estimators' predict_proba."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io
from scipy.stats import norm, trim_mean
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

from miakit import model_jobs, pipeline
from miakit.config import load_config
from miakit.data import load_pool
from miakit.errors import MiakitError
from miakit.models.sklearn_model import (
    PROBABILITY_FLOOR,
    estimator_logits,
    load_estimator,
    new_estimator,
)
from miakit.plan import trained
from miakit.signals import log_odds
from miakit.store import RunDir

from .attack_inputs import chosen_references

RF = "sklearn.ensemble.RandomForestClassifier"
LR = "sklearn.linear_model.LogisticRegression"


def sklearn_config(estimator: str, *extra: str):
    return load_config(
        None,
        [
            "data.name=breast-cancer",
            "model.arch=sklearn",
            f"model.estimator={estimator}",
            "split.num_models=16",
            "attacks=[lira-online, lira-offline, rmia]",
            *extra,
        ],
    )


def test_breast_cancer_is_scikit_learns_data():
    pool = load_pool("breast-cancer")
    bunch = load_breast_cancer()
    assert pool.x.shape == (569, 30) and pool.num_classes == 2
    np.testing.assert_array_equal(pool.x, bunch.data.astype(np.float32))
    np.testing.assert_array_equal(pool.y, bunch.target)


def test_logits_follow_the_pools_classes_and_floor_zeros():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = np.where(x[:, 0] > 0, 3, 1)  # classes 0 and 2 of four never seen
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    logits = estimator_logits(forest, x, 4)
    assert logits.shape == (120, 1, 4) and logits.dtype == np.float32
    proba = forest.predict_proba(x)
    expected = np.full((120, 4), np.log(PROBABILITY_FLOOR))
    for column, cls in enumerate(forest.classes_):
        with np.errstate(divide="ignore"):
            expected[:, cls] = np.maximum(np.log(proba[:, column]), np.log(PROBABILITY_FLOOR))
    np.testing.assert_allclose(logits[:, 0], expected, rtol=1e-6)
    # a forest on its own training records gives exact 0 and 1 often: all finite, order kept
    assert (proba == 1.0).any() and np.isfinite(logits).all()
    labels = np.where(y == 3, 1, 0)  # column of y in classes_ [1, 3]
    p_true = proba[np.arange(120), labels]
    phi = log_odds(logits, y)[:, 0]
    assert np.isfinite(phi).all()
    order = np.argsort(p_true, kind="stable")
    assert (np.diff(phi[order]) >= 0).all()  # φ never falls as p_y grows
    assert (np.diff(phi[order])[np.diff(p_true[order]) > 0] > 0).all()  # and strictly rises


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (["model.estimator=os.system"], "model.estimator: 'os.system' is outside"),
        (["model.estimator=sklearn.ensemble.NoSuchForest"], "no estimator class"),
        (["model.params={n_trees: 3}"], "model.params"),
        (["model.params={n_estimators: -3}"], "model.params"),
        (["model.params={random_state: 3}"], "model.params.random_state"),
        (["model.estimator=sklearn.svm.SVC"], "no predict_proba"),
        (["query.augmentations=2"], "query.augmentations"),
        (["train.record_trace=true"], "train.record_trace"),
        (["attack_options={rmia: {signal: taylor_soft_margin}}"], "signal: softmax"),
    ],
)
def test_plan_refuses_bad_estimator_settings(tmp_path, setting, message):
    config = sklearn_config(RF, *setting)
    with pytest.raises(MiakitError, match=message):
        pipeline.plan(config, RunDir(tmp_path / "run"), log=None)
    assert not (tmp_path / "run" / "run.yaml").exists()


def test_config_refuses_estimator_settings_of_other_forms():
    with pytest.raises(MiakitError, match="estimator"):
        load_config(None, ["model.arch=sklearn"])
    with pytest.raises(MiakitError, match="only with arch 'sklearn'"):
        load_config(None, [f"model.estimator={RF}"])


def test_random_state_comes_from_the_models_seed():
    a = new_estimator(RF, {"n_estimators": 3}, False, seed=7)
    b = new_estimator(LR, {}, True, seed=2**32 + 7)
    assert a.get_params()["random_state"] == 7
    assert b.get_params()["logisticregression__random_state"] == 7
    assert type(b.steps[0][1]).__name__ == "StandardScaler"


class Foreign:
    """Not of an allowed package: a skops file holding it must not be loaded."""


def test_skops_files_with_foreign_types_are_refused(tmp_path):
    path = tmp_path / "estimator.skops"
    skops.io.dump({"model": Foreign()}, path)
    with pytest.raises(MiakitError, match=r"asks for type .*Foreign"):
        load_estimator(path, RF, False)


def _phi(proba: np.ndarray, classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """φ from predict_proba, as documented: log max(p, 1e-30) stored as float32 logits, then
    log p_y − log Σ_{j≠y} p_j in float64 with an explicit loop over records."""
    logp = np.full((len(labels), 2), np.log(PROBABILITY_FLOOR))
    with np.errstate(divide="ignore"):
        logp[:, classes] = np.maximum(np.log(proba), np.log(PROBABILITY_FLOOR))
    logp = logp.astype(np.float32).astype(np.float64)
    out = np.empty(len(labels))
    for n, y in enumerate(labels):
        others = [logp[n, j] for j in range(2) if j != y]
        out[n] = logp[n, y] - np.log(np.sum(np.exp(others)))
    return out, logp


def _spread(values: np.ndarray) -> float:
    return 0.0 if np.ptp(values) == 0 else float(np.std(values))


def independent_scores(run: RunDir, pool, keep: np.ndarray, kind: str, standardize: bool):
    """LiRA online and offline (median, per-record σ, global σ where a side has no spread) and
    RMIA (softmax signal at T = 2, γ = 2, 20% trimmed mean, Z = the target's non-members), for
    every target with all other models as references, from the reloaded skops estimators."""
    models, n = keep.shape
    phi = np.empty((models, n))
    prob = np.empty((models, n))
    for m in range(models):
        estimator = load_estimator(run.estimator(m), kind, standardize)
        proba = estimator.predict_proba(pool.x.astype(np.float64))
        phi[m], logp = _phi(proba, np.asarray(estimator.classes_), pool.y)
        tempered = np.exp(logp / 2.0)
        prob[m] = tempered[np.arange(n), pool.y] / tempered.sum(axis=1)
    online = np.empty((models, n))
    offline = np.empty((models, n))
    rmia = np.empty((models, n))
    for t in range(models):
        refs = [m for m in range(models) if m != t]
        sub_keep, sub_phi = keep[refs], phi[refs]
        global_sd = {}
        for side, mask in (("in", sub_keep), ("out", ~sub_keep)):
            sd = float(np.std(sub_phi[mask]))
            global_sd[side] = sd if sd > 0 else 1.0
        for x in range(n):  # equal reference counts (the default), see `chosen_references`
            both = chosen_references(keep, x, t, range(models), ("IN", "OUT"))
            values_in, values_out = phi[both["IN"], x], phi[both["OUT"], x]
            mu_in, mu_out = np.median(values_in), np.median(values_out)
            sd_in = _spread(values_in) or global_sd["in"]
            sd_out = _spread(values_out) or global_sd["out"]
            online[t, x] = norm.logpdf(phi[t, x], mu_in, sd_in) - norm.logpdf(
                phi[t, x], mu_out, sd_out
            )
            outs = phi[chosen_references(keep, x, t, range(models), ("OUT",))["OUT"], x]
            sd_out = _spread(outs) or global_sd["out"]
            offline[t, x] = norm.logcdf((phi[t, x] - np.median(outs)) / sd_out)
        p_x = np.array([trim_mean(prob[refs, x], 0.2) for x in range(n)])
        ratio = prob[t] / p_x
        population = np.flatnonzero(~keep[t])
        for x in range(n):
            rmia[t, x] = np.mean([ratio[x] / ratio[z] > 2.0 for z in population])
    return {"lira-online": online, "lira-offline": offline, "rmia": rmia}


@pytest.mark.parametrize(
    "estimator,extra",
    [
        (RF, ["model.params={n_estimators: 25, min_samples_leaf: 1}"]),
        (LR, ["model.standardize=true"]),
    ],
    ids=["random-forest", "logistic-regression"],
)
def test_audit_scores_agree_with_the_estimators_predict_proba(tmp_path, estimator, extra):
    run = RunDir(tmp_path / "run")
    config = sklearn_config(estimator, *extra)
    planned = pipeline.plan(config, run, log=None)
    pipeline.train(planned, run, log=None)
    pipeline.query(planned, run, log=None)
    pipeline.attack(run, planned.config)
    plan = pipeline.load_plan(run)
    assert plan.config.attack_options["rmia"]["signal"] == "softmax"  # resolved, in run.yaml
    for m in range(16):
        assert run.estimator(m).is_file() and not run.weights(m).exists()
        assert np.load(run.logits(m)).shape == (569, 1, 2)
    expected = independent_scores(
        run, plan.pool, plan.keep, estimator, plan.config.model.standardize
    )
    for name, want in expected.items():
        got = np.load(run.scores(name))
        assert got.shape == (16, 569) and np.isfinite(got).all(), name
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9, err_msg=name)
    if estimator == RF:  # a forest's members are told apart (LR barely leaks: AUC ≈ 0.51)
        lira = np.load(run.scores("lira-online"))
        assert np.mean([roc_auc_score(plan.keep[t], lira[t]) for t in range(16)]) > 0.55
    # resumes: nothing retrains; an overwritten estimator file is stale
    assert model_jobs.train_models(plan, run, range(16)) == []
    run.estimator(3).write_bytes(run.estimator(5).read_bytes())
    assert not trained(run, plan, 3) and trained(run, plan, 4)


@pytest.mark.slow  # two spawned workers each import torch: about 45 s on 2 loaded cores
def test_processes_train_estimators_in_parallel(tmp_path):
    run = RunDir(tmp_path / "run")
    config = sklearn_config(
        RF,
        "model.params={n_estimators: 5}",
        "split.num_models=4",
        "execution.executor=processes",
        "execution.workers=2",
    )
    planned = pipeline.plan(config, run, log=None)
    assert sorted(pipeline.train(planned, run, log=None)) == [0, 1, 2, 3]
    metas = [run.read_meta(m) for m in range(4)]
    assert all(meta and meta["device"] == "cpu" for meta in metas)
    assert len({meta["worker"]["pid"] for meta in metas}) >= 1
    plan = pipeline.load_plan(run)
    for m in range(4):
        assert trained(run, plan, m)
        forest = load_estimator(run.estimator(m), RF, False)
        rows = np.flatnonzero(plan.keep[m])
        again = RandomForestClassifier(n_estimators=5, random_state=forest.random_state)
        again.fit(plan.pool.x[rows].astype(np.float64), plan.pool.y[rows])
        np.testing.assert_array_equal(
            forest.predict_proba(plan.pool.x.astype(np.float64)),
            again.predict_proba(plan.pool.x.astype(np.float64)),
        )


def test_the_verdict_suggests_regularizing_an_estimator_not_dp_sgd():
    from miakit.config import dump_config
    from miakit.report.verdict import _is_estimator_run, next_step

    assert _is_estimator_run(dump_config(sklearn_config(RF)))
    assert not _is_estimator_run(dump_config(load_config(None, [])))
    step = next_step("lira-online", None, 0.01, True, 0.1, "runs/x", estimator=True)
    assert "regularize the estimator" in step and "dpsgd" not in step
    assert "dpsgd" in next_step("lira-online", None, 0.01, True, 0.1, "runs/x")


def test_the_single_point_experiment_refuses_estimators(tmp_path):
    from miakit.config import SinglePointConfig
    from miakit.single_point import run_single_point

    config = load_config(
        None, ["model.arch=sklearn", f"model.estimator={RF}", "target_index=0"], SinglePointConfig
    )
    with pytest.raises(MiakitError, match="single-point experiment trains torch"):
        run_single_point(config, tmp_path / "sp")
    assert not (tmp_path / "sp").exists()
