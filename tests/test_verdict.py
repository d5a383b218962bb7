"""The verdict, against figures computed here by brute force from the synthetic run's arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miakit.report.runs import load_run
from miakit.report.verdict import (
    Figure,
    Verdict,
    exposed_by_chance,
    next_step,
    strongest_attack,
    verdict,
)
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


def threshold_at(scores: np.ndarray, members: np.ndarray, fpr: float) -> float:
    """The lowest score with at most fpr × (non-members) non-members at or above it (inf when
    there is none): one target's threshold at that FPR, by brute force."""
    allowed = np.floor(fpr * (~members).sum() + 1e-9)
    fits = [t for t in np.unique(scores) if (scores[~members] >= t).sum() <= allowed]
    return float(min(fits)) if fits else np.inf


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("verdict") / "run")


def test_verdict_figures_match_a_brute_force_computation(run):
    found = verdict(load_run(run.root))
    keep = np.load(run.keep)[:TARGETS]
    labels = np.load(run.labels)
    scores = {a: np.load(run.scores(a)) for a in ATTACKS}
    # fewer than 1,000 non-members per target: FPR 0.1% is not measurable, so the verdict works
    # at FPR 1% (at least 100 non-members)
    non_members = (~keep).sum(axis=1)
    assert non_members.max() < 1000 and non_members.min() >= 100
    x = 0.01
    assert found.tpr[0.001] is None and found.ppv_fpr == x

    # strongest: the highest mean TPR at FPR 1%, each target's TPR at its own threshold
    own = {a: [threshold_at(s[t], keep[t], x) for t in range(TARGETS)] for a, s in scores.items()}
    tpr = {
        a: np.mean([np.mean(s[t][keep[t]] >= own[a][t]) for t in range(TARGETS)])
        for a, s in scores.items()
    }
    assert found.attack == max(tpr, key=tpr.get)
    assert found.tpr[x].mean == pytest.approx(tpr[found.attack])

    # exposed: flagged under the median of the other targets' thresholds by a target that
    # trained on it and by none that did not
    s, thresholds = scores[found.attack], own[found.attack]
    exposed = []
    for n in range(keep.shape[1]):
        tp = fp = 0
        for t in range(TARGETS):
            tau = np.median([thresholds[u] for u in range(TARGETS) if u != t])
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


@pytest.mark.parametrize(("most", "fpr"), [(False, 0.05), (True, 0.3)])
def test_exposed_by_chance_matches_a_simulation(most, fpr):
    rng = np.random.default_rng(3)
    keep = rng.random((8, 400)) < 0.5
    counts = []
    for _ in range(400):
        called = rng.random(keep.shape) < fpr
        tp, fp = (called & keep).sum(axis=0), (called & ~keep).sum(axis=0)
        caught = tp > keep.sum(axis=0) / 2 if most else tp > 0
        counts.append(np.sum(caught & (fp == 0)))
    simulated = np.mean(counts)
    assert simulated > 5
    assert exposed_by_chance(keep, fpr, most) == pytest.approx(simulated, rel=0.03)


def test_one_target_gives_a_verdict_without_record_level_claims(tmp_path):
    run = write_run(tmp_path / "run")
    for attack in ATTACKS:
        np.save(run.scores(attack), np.load(run.scores(attack))[:1])
    found = verdict(load_run(run.root))
    assert found.exposed is None and found.top.empty
    assert "needs two target models" in " ".join(found.sentences())


@pytest.mark.parametrize(
    ("exposed", "by_chance", "in_most", "in_most_by_chance", "leak"),
    [(116, 366.0, 0, 0.0, False), (116, 366.0, 41, 0.0, True), (75, 36.4, 1, 2.0, True)],
)
def test_exposed_records_are_read_against_what_chance_exposes(
    exposed, by_chance, in_most, in_most_by_chance, leak
):
    """The verdict says whether the exposed records, or those caught by most of their member
    targets, exceed an attack without signal's (over twice its expected count, plus 2), and so
    whether they are evidence that records leak."""
    found = Verdict(
        attack="lira-online", auc=Figure(0.6), tpr={0.001: Figure(0.01)}, ppv_fpr=0.001,
        ppv={0.01: None, 0.1: None}, records=1797, exposed=exposed, exposed_by_chance=by_chance,
        exposed_in_most=in_most, in_most_by_chance=in_most_by_chance, chance_fpr=0.012,
        top=pd.DataFrame(), train_accuracy=None, test_accuracy=None, smallest_fpr=0.001,
        next_step="audit again.",
    )  # fmt: skip
    sentence = next(line for line in found.sentences() if "exposed" in line)
    assert found.records_leak is leak
    assert f"{exposed} of 1,797" in sentence and f"{in_most} of them by most" in sentence
    by_most = f"{in_most_by_chance:.0f}" if in_most_by_chance else "none"
    assert f"about {by_chance:.0f}, {by_most} of them by most" in sentence
    assert "FPR 1.2%" in sentence
    assert sentence.endswith(("those records leak.", "these records leak.")) is leak
    assert ("no evidence" in sentence) is not leak
    assert (f"the {in_most} caught by most of their targets are not chance" in sentence) is (
        in_most > 2 * in_most_by_chance + 2
    )


def test_a_run_too_small_for_every_tpr_says_so_instead_of_a_blank():
    """Where no TPR at the verdict's FPRs is measurable (fewer than 1/FPR non-members per
    target, as a small text corpus has), the verdict names the attack and its AUC and says why
    no TPR is given, rather than "which catches  (AUC …)"."""
    found = Verdict(
        attack="lm-loss", auc=Figure(0.668), tpr={0.01: None, 0.001: None}, ppv_fpr=0.01,
        ppv={0.01: None}, records=96, exposed=None, exposed_by_chance=0.0, exposed_in_most=0,
        in_most_by_chance=0.0, chance_fpr=0.01, top=pd.DataFrame(), train_accuracy=None,
        test_accuracy=None, smallest_fpr=0.01, next_step="audit again.",
    )  # fmt: skip
    first = found.sentences()[0]
    assert first.startswith("Strongest attack: lm-loss (AUC 0.668). No TPR at FPR 1% or FPR 0.1%")
    assert "catches  " not in " ".join(found.sentences())


@pytest.mark.parametrize(("low", "leaks"), [(0.63, True), (0.49, False)])
def test_where_no_tpr_is_measurable_an_auc_above_chance_beyond_its_interval_is_a_leak(low, leaks):
    """With the TPR at the verdict's FPR not measurable, the AUC's interval decides: above 0.5
    beyond it, the model leaks and the next step is a defence (for a language model, its own
    advice); else more records or target models."""
    step = next_step(
        "rmia", None, 0.01, False, None, "runs/text", text=True, auc=Figure(0.775, low, 0.92)
    )
    assert ("no defence for language models" in step) is leaks
    assert ("audit with more records or more target models" in step) is not leaks
