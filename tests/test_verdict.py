"""The verdict, against figures computed here by brute force from the synthetic run's arrays."""

from __future__ import annotations

import numpy as np
import pytest

from miakit.report.runs import load_run
from miakit.report.verdict import exposed_by_chance, strongest_attack, verdict
from tests.test_report import ATTACKS, TARGETS, write_run


def test_strongest_is_the_highest_tpr_at_0_1_percent_then_at_1_percent_then_auc():
    def figures(t01: float, t1: float, auc: float) -> dict:
        return {
            "tpr@fpr=0.001": {"mean": t01},
            "tpr@fpr=0.01": {"mean": t1},
            "auc": {"mean": auc},
        }

    metrics = {
        "a": figures(0.1, 0.2, 0.9),
        "b": figures(0.2, 0.1, 0.6),
        "c": figures(0.2, 0.3, 0.5),
    }
    assert strongest_attack(metrics, [0.001, 0.01]) == "c"
    metrics["c"] = figures(0.2, 0.1, 0.7)  # tied at both FPRs: AUC decides
    assert strongest_attack(metrics, [0.001, 0.01]) == "c"
    metrics["c"] = figures(float("nan"), 0.9, 0.9)  # not measured counts as nothing
    assert strongest_attack(metrics, [0.001, 0.01]) == "b"


def threshold_without_false_positives(scores: np.ndarray, members: np.ndarray) -> float:
    """FPR 0.1% on fewer than 1,000 non-members allows no false positive: the lowest score above
    every non-member's (inf when there is none)."""
    above = scores[scores > scores[~members].max()]
    return float(above.min()) if above.size else np.inf


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("verdict") / "run")


def test_verdict_figures_match_a_brute_force_computation(run):
    found = verdict(load_run(run.root))
    keep = np.load(run.keep)[:TARGETS]
    labels = np.load(run.labels)
    scores = {a: np.load(run.scores(a)) for a in ATTACKS}
    assert keep.shape[1] - keep.sum(axis=1).max() < 1000  # so FPR 0.1% means no false positive

    # strongest: the highest mean share of members above every non-member
    tpr0 = {
        a: np.mean([np.mean(s[t][keep[t]] > s[t][~keep[t]].max()) for t in range(TARGETS)])
        for a, s in scores.items()
    }
    assert found.attack == max(tpr0, key=tpr0.get)
    assert found.tpr[0.001].mean == pytest.approx(tpr0[found.attack])

    # exposed: flagged under the median of the other targets' thresholds by a target that
    # trained on it and by none that did not
    s = scores[found.attack]
    own = [threshold_without_false_positives(s[t], keep[t]) for t in range(TARGETS)]
    exposed = []
    for n in range(keep.shape[1]):
        tp = fp = 0
        for t in range(TARGETS):
            tau = np.median([own[u] for u in range(TARGETS) if u != t])
            if s[t, n] >= tau:
                tp += keep[t, n]
                fp += not keep[t, n]
        if tp > 0 and fp == 0:
            exposed.append(n)
    assert found.exposed == len(exposed)
    assert set(found.top["record"]) <= set(exposed)
    assert (found.top["record"].head(5) < 10).all()  # the planted records 0..9 lead
    assert (found.top["label"] == labels[found.top["record"]]).all()

    # accuracy on members and non-members, from the logits, and the smallest measurable FPR
    train, test = [], []
    for t in range(TARGETS):
        predicted = np.load(run.logits(t))[:, 0].argmax(axis=1)
        train.append(np.mean(predicted[keep[t]] == labels[keep[t]]))
        test.append(np.mean(predicted[~keep[t]] == labels[~keep[t]]))
    assert found.train_accuracy == pytest.approx(np.mean(train))
    assert found.test_accuracy == pytest.approx(np.mean(test))
    assert found.smallest_fpr == pytest.approx(1 / min((~keep).sum(axis=1)))
    text = " ".join(found.sentences())
    assert found.attack in text and "Next step" in text


def test_exposed_by_chance_matches_a_simulation():
    rng = np.random.default_rng(3)
    keep = rng.random((8, 400)) < 0.5
    fpr = 0.05
    counts = []
    for _ in range(400):
        called = rng.random(keep.shape) < fpr
        tp, fp = (called & keep).sum(axis=0), (called & ~keep).sum(axis=0)
        counts.append(np.sum((tp > 0) & (fp == 0)))
    simulated = np.mean(counts)
    assert exposed_by_chance(keep, fpr) == pytest.approx(simulated, rel=0.03)


def test_one_target_gives_a_verdict_without_record_level_claims(tmp_path):
    run = write_run(tmp_path / "run")
    for attack in ATTACKS:
        np.save(run.scores(attack), np.load(run.scores(attack))[:1])
    found = verdict(load_run(run.root))
    assert found.exposed is None and found.top.empty
    assert "needs two target models" in " ".join(found.sentences())
