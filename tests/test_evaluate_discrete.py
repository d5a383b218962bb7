"""Figures on scores with few values (label-only attacks, rounded outputs, trees), issue 31.

Every figure of `summarize` is checked against a brute force written here: every threshold tried
(each distinct score and +inf), TPR at FPR x as the most members called by a threshold whose
false positives are at most x · n₀ in exact arithmetic, AUC as the Mann–Whitney probability with
ties counted half. Scores are constant, 0/1 and 5-level, given directly and as every registered
attack makes them from outputs quantised to few values; intervals must contain their figures,
and nothing written or printed may read nan or inf.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from miakit import cli
from miakit.attacks import make_attack
from miakit.config import load_config
from miakit.evaluate.intervals import INTERVAL_NOTE
from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.metrics import long_rows, summarize, target_intervals, target_metrics
from miakit.evaluate.thresholds import PRIORS, calibrate
from miakit.report.compare import compare_runs
from miakit.report.html import write_report
from miakit.report.runs import load_run
from miakit.report.verdict import verdict
from miakit.signals import Signals
from miakit.store import save_json, save_npy
from tests.attack_inputs import LOGIT_ATTACKS
from tests.synthetic import balanced_keep_matrix
from tests.test_report import ATTACKS as RUN_ATTACKS
from tests.test_report import TARGETS as RUN_TARGETS
from tests.test_report import write_run

FPRS = (0.2, 0.05, 0.01)
TARGETS = 4
#: Cheaper options where an attack trains a classifier (the figures do not depend on its size).
OPTIONS = {
    "shokri": {"epochs": 20, "hidden": 8},
    "salem": {"epochs": 20, "hidden": 8},
    "qmia": {"max_iter": 5},
}
NAN_OR_INF = re.compile(r"\b(nan|inf|infinity)\b", re.IGNORECASE)


def brute_force(scores: np.ndarray, keep: np.ndarray, targets, fprs, priors) -> dict:
    """Figure name → its mean over targets (None: undefined in every target), and the
    target-calibrated thresholds as ("tau", x) → [τ per target]."""
    per_target: dict = {}
    taus: dict = {x: [] for x in fprs}
    for i, t in enumerate(targets):
        s, m = [float(v) for v in scores[i]], [bool(v) for v in keep[t]]
        pos = [v for v, k in zip(s, m, strict=True) if k]
        neg = [v for v, k in zip(s, m, strict=True) if not k]
        n1, n0 = len(pos), len(neg)
        points = [
            (tau, sum(v >= tau for v in pos), sum(v >= tau for v in neg))
            for tau in [*sorted(set(s)), math.inf]
        ]
        pairs = [1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg]
        figures = {
            "auc": sum(pairs) / len(pairs),
            "balanced_accuracy": max((1 + tp / n1 - fp / n0) / 2 for _, tp, fp in points),
        }
        for x in fprs:
            allowed = [p for p in points if Fraction(p[2], n0) <= Fraction(str(x))]
            tau, tp, fp = max(allowed, key=lambda p: (p[1], -p[2]))
            taus[x].append(tau)
            figures[f"tpr@fpr={x:g}"] = tp / n1
            figures[f"fp@fpr={x:g}"] = fp
        per_target[i] = (figures, pos, neg)
    out: dict = {}
    for name in per_target[0][0]:
        out[name] = statistics.fmean(f[name] for f, _, _ in per_target.values())
    for x in fprs:
        out[("tau", x)] = taus[x]
        rates = {"target": [], "shadow": []}
        for i in per_target:
            _, pos, neg = per_target[i]
            others = taus[x][:i] + taus[x][i + 1 :]
            for kind, tau in (("target", taus[x][i]), ("shadow", statistics.median(others))):
                rates[kind].append(
                    (sum(v >= tau for v in pos) / len(pos), sum(v >= tau for v in neg) / len(neg))
                )
        out[f"shadow_tpr@fpr={x:g}"] = statistics.fmean(r[0] for r in rates["shadow"])
        out[f"shadow_fpr@fpr={x:g}"] = statistics.fmean(r[1] for r in rates["shadow"])
        for p in priors:
            for name, kind in (("ppv", "target"), ("shadow_ppv", "shadow")):
                values = [p * a / (p * a + (1 - p) * b) for a, b in rates[kind] if a or b]
                out[f"{name}@fpr={x:g},prior={p:g}"] = statistics.fmean(values) if values else None
    return out


def check_figures(scores: np.ndarray, keep: np.ndarray) -> dict:
    """summarize(scores) against the brute force: equal figures, undefined ones recorded with a
    reason, thresholds that reproduce their counts, intervals that contain their figures, and
    metrics.json and metrics.csv free of nan and inf. Returns the summary."""
    targets = list(range(len(scores)))
    summary = summarize(scores, keep, targets, FPRS)
    expected = brute_force(scores, keep, targets, FPRS, PRIORS)
    non_members = min((~keep[t]).sum() for t in targets)
    for name, value in expected.items():
        if isinstance(name, tuple):
            continue
        figure = summary[name]
        x = MetricKey.parse(name).fpr
        if x is not None and non_members < 1 / x:
            assert "not_measurable" in figure and figure["mean"] is None, name
        elif value is None:
            assert figure["mean"] is None and "no record is called member" in figure["undefined"]
        else:
            assert figure["mean"] == pytest.approx(value, abs=1e-12), name
    table = calibrate(scores, keep, targets, FPRS)
    for x in FPRS:
        rows = table[table["fpr"] == x]
        np.testing.assert_array_equal(rows["tau_target"], expected[("tau", x)])
        for i, t in enumerate(targets):  # `score ≥ τ` reproduces the figure's counts
            called = scores[i] >= expected[("tau", x)][i]
            assert (called & ~keep[t]).sum() == rows["fp_target"].iloc[i]
            assert (called & keep[t]).sum() / keep[t].sum() == rows["tpr_target"].iloc[i]
        tpr = rows["tpr_target"].mean()
        assert tpr == pytest.approx(expected[f"tpr@fpr={x:g}"]) or non_members < 1 / x
    for i, t in enumerate(targets):  # each target's interval contains its own figure
        figures = target_metrics(scores[i], keep[t], FPRS)
        for name, (low, high) in target_intervals(scores[i], keep[t], FPRS).items():
            assert low <= figures[name] <= high, (name, low, figures[name], high)
    for name, figure in summary.items():
        if "ci_low" in figure:
            assert figure["ci_low"] <= figure["mean"] <= figure["ci_high"], name
    json.dumps(summary, allow_nan=False)  # raises on NaN or inf
    csv = pd.DataFrame(long_rows({"attack": summary})).to_csv(index=False)
    assert not NAN_OR_INF.search(csv), NAN_OR_INF.search(csv)
    return summary


def few_valued(kind: str, targets: int = TARGETS, records: int = 240, seed: int = 0):
    """(scores [T, N], keep [T, N]): constant, 0/1 (members score 1 a little more often) or
    5-level scores, on balanced membership."""
    rng = np.random.default_rng(seed)
    keep = balanced_keep_matrix(2 * targets, records, seed)[:targets]
    if kind == "constant":
        scores = np.full(keep.shape, 0.25)
    elif kind == "0/1":  # the label-only attack of the issue: most records labelled correctly
        scores = (rng.random(keep.shape) < np.where(keep, 0.97, 0.93)).astype(float)
    elif kind == "0/1 rare":  # few non-members score 1: the vertex at FPR ≤ 1% calls some
        scores = (rng.random(keep.shape) < np.where(keep, 0.3, 0.004)).astype(float)
    else:
        scores = np.minimum(rng.integers(0, 4, keep.shape) + keep, 4) / 4
    return scores, keep


@pytest.mark.parametrize("kind", ["constant", "0/1", "0/1 rare", "5-level"])
def test_figures_on_few_valued_scores_equal_a_brute_force(kind):
    summary = check_figures(*few_valued(kind))
    if kind == "0/1":  # the example: TPR 0 at FPR 1%, and an interval around 0
        tpr = summary["tpr@fpr=0.01"]
        assert tpr["mean"] == 0 and tpr["ci_low"] == 0 and tpr["ci_high"] < 0.05
        assert "undefined" in summary["ppv@fpr=0.01,prior=0.1"]


def quantised_signals(kind: str, models: int = 8, records: int = 240, classes: int = 3):
    """Signals whose outputs take few values: all equal ("constant"), label-like one-hot logits
    (right more often where the model trained on the record, "0/1"), or a true-class logit on 5
    levels ("5-level"); loss traces and features to match, for the attacks that read them."""
    rng = np.random.default_rng(1)
    keep = balanced_keep_matrix(models, records, 1)
    labels = rng.integers(0, classes, records)
    logits = np.zeros((models, records, 1, classes))
    rows, columns = np.arange(models)[:, None], np.arange(records)[None, :]
    if kind == "0/1":
        right = rng.random(keep.shape) < np.where(keep, 0.9, 0.6)
        wrong = (labels + 1 + rng.integers(0, classes - 1, keep.shape)) % classes
        logits[rows, columns, 0, np.where(right, labels, wrong)] = 8.0
    elif kind == "5-level":
        logits[rows, columns, 0, labels] = np.minimum(rng.integers(0, 4, keep.shape) + keep, 4)
    z = logits[:, :, 0, :]
    loss = np.log(np.exp(z).sum(-1)) - z[rows, columns, labels]
    traces = loss[:, None, :] * (1 + 0.1 * np.arange(5))[None, :, None]  # IQR ∝ loss
    features = rng.normal(size=(records, 4))
    return Signals.from_arrays(logits, labels, keep, traces=traces, features=features), keep


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.attack(name)) for name in LOGIT_ATTACKS]
)
def test_every_attack_on_few_valued_outputs_gives_right_figures(name):
    for kind in ("constant", "0/1", "5-level"):
        signals, keep = quantised_signals(kind)
        scores = make_attack(name, OPTIONS.get(name)).score_leave_one_out(
            signals, list(range(TARGETS))
        )
        assert np.isfinite(scores).all(), (name, kind)
        check_figures(scores, keep[:TARGETS])


def write_discrete_run(root, seed: int = 0, silent_only: bool = True):
    """The synthetic run of test_report with 0/1 and 5-level scores whose TPR at FPR 1% is 0 in
    every target (most non-members at the top level); with `silent_only` False, one attack keeps
    its continuous scores and catches members."""
    run = write_run(root, seed)
    keep = np.load(run.keep)
    rng = np.random.default_rng(seed)
    metrics = {}
    for k, attack in enumerate(RUN_ATTACKS):
        scores = np.load(run.scores(attack))
        if silent_only or k:
            if k % 2:
                scores = (rng.random(scores.shape) < np.where(keep[:RUN_TARGETS], 0.97, 0.93)) * 1.0
            else:
                scores = np.minimum(rng.integers(1, 5, scores.shape) + keep[:RUN_TARGETS], 4) / 4
            save_npy(run.scores(attack), scores)
        metrics[attack] = summarize(scores, keep, range(RUN_TARGETS), [0.01, 0.001])
    save_json(run.metrics_json, {"attacks": metrics, "intervals": INTERVAL_NOTE})
    pd.DataFrame(long_rows(metrics)).to_csv(run.metrics_csv, index=False)
    return run


def without_images(text: str) -> str:
    return re.sub(r"base64,[A-Za-z0-9+/=]+", "", text)


def test_a_run_whose_attacks_catch_no_member_says_so_in_words(tmp_path):
    """The verdict, the CLI, report.html, metrics.csv and compare.html of a run whose attacks
    catch no member at FPR 1%: no nan, no inf, PPV undefined in words, and the verdict says
    that no attack separates members there, with the best one's AUC and first catch."""

    runs = [write_discrete_run(tmp_path / f"run{s}", s) for s in (0, 1)]
    found = verdict(load_run(runs[0].root))
    assert found.none_separate and found.calls_none
    assert set(found.silent) == set(load_run(runs[0].root).metrics)
    sentences = found.sentences()
    text = " ".join(sentences)
    assert sentences[0].startswith("No attack separates members at FPR 1%: none of ")
    assert f"The best, {found.attack} (TPR 0.0% [0.0, " in sentences[0]
    assert f"; AUC {found.auc.decimal()})" in sentences[0]
    assert f"first catches members at FPR {100 * found.silent[found.attack]:.3g}%" in text
    assert "PPV) is undefined" in text and "would expose" not in text
    config = load_config(None, ["evaluate.fprs=[0.01, 0.001]"])
    with cli.console.capture() as printed:
        cli.print_metrics(runs[0], config, found.attack)
        cli.print_verdict(found)
    html = without_images(write_report(runs[0].root).read_text())
    assert "undefined (no member call)" in html
    compared = compare_runs([r.root for r in runs], tmp_path / "compare")
    outputs = {
        "verdict": text,
        "cli": printed.get(),
        "report": html,
        "metrics.csv": runs[0].metrics_csv.read_text(),
        "compare": without_images(compared.path.read_text()),
        "compare.csv": (tmp_path / "compare" / "compare.csv").read_text(),
    }
    for where, output in outputs.items():
        assert not NAN_OR_INF.search(output), (where, NAN_OR_INF.search(output))


def test_attacks_silent_beside_a_stronger_one_are_named_with_their_first_catch(tmp_path):

    found = verdict(load_run(write_discrete_run(tmp_path / "run", silent_only=False).root))
    assert not found.none_separate and found.attack == "lira-online"
    assert set(found.silent) == {"attack-r", "loss", "lt-iqr"}
    sentence = next(s for s in found.sentences() if "catch no member" in s)
    assert sentence.startswith("attack-r, loss and lt-iqr catch no member at FPR 1%")
    for attack, first in found.silent.items():
        assert f"{attack} at FPR {100 * first:.3g}%" in sentence
        assert 0.01 < first <= 1  # no threshold of FPR ≤ 1% calls a member
