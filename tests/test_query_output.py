"""query.output: what a deployed API returns, as every attack sees it (miakit.output_restriction).

Each restriction is checked against a hand computation (math.exp loops); every attack stays finite
on every restriction or says why it cannot run; a run with `query.output: label` completes with
each attack scored or skipped with its reason, and changing the output re-runs the attacks without
retraining or re-querying a model.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from miakit import model_jobs, pipeline
from miakit.attacks import ATTACKS, make_attack
from miakit.config import load_config
from miakit.errors import MiakitError
from miakit.output_restriction import FLOAT32_FLOOR, check_output, parse_output, restrict_logits
from miakit.signals import Signals
from miakit.store import RunDir

from .attack_inputs import direct_softmax, random_signals

OUTPUTS = ["logits", "probabilities", "rounded:2", "top-k:1", "top-k:2", "label"]


def hand_restricted(z: list[float], spec: str) -> list[float]:
    """One record's restricted outputs by the module docstring's rules, value by value."""
    p = direct_softmax(z)
    classes = len(z)
    if spec == "label":
        top = z.index(max(z))
        q = [1.0 if c == top else 0.0 for c in range(classes)]
        return [math.log(max(v, FLOAT32_FLOOR)) for v in q]
    if spec.startswith("rounded:"):
        d = int(spec.split(":")[1])
        return [math.log(max(round(v, d), 0.5 * 10**-d)) for v in p]
    p32 = [float(np.float32(v)) for v in p]
    if spec.startswith("top-k:"):
        k = int(spec.split(":")[1])
        ranked = sorted(range(classes), key=lambda c: -p32[c])[:k]
        share = max(1.0 - sum(p32[c] for c in ranked), 0.0) / (classes - k)
        share = min(share, min(p32[c] for c in ranked))
        p32 = [p32[c] if c in ranked else share for c in range(classes)]
    return [math.log(max(v, FLOAT32_FLOOR)) for v in p32]


@pytest.mark.parametrize("spec", ["probabilities", "rounded:1", "rounded:3", "top-k:1", "top-k:3"])
def test_each_restriction_matches_a_hand_computation(spec):
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.normal(0, 3, (30, 5)), [[40.0, 0, -3, 1, 2], [0, 0, 0, 0, 0]]])
    restricted = restrict_logits(logits, spec)
    for z, got in zip(logits, restricted, strict=True):
        np.testing.assert_allclose(got, hand_restricted(list(z), spec), rtol=1e-12, atol=1e-12)


def test_label_output_is_one_hot_of_the_argmax():
    logits = np.array([[0.1, 2.0, -1.0], [5.0, 5.0, 1.0]])
    restricted = restrict_logits(logits, "label")
    for z, got in zip(logits, restricted, strict=True):
        np.testing.assert_allclose(got, hand_restricted(list(z), "label"), rtol=1e-12)
    assert list(np.argmax(restricted, axis=-1)) == [1, 0]  # a tie: the first class, as argmax


def test_logits_are_returned_unchanged():
    logits = np.random.default_rng(1).normal(0, 3, (4, 2, 3))
    assert restrict_logits(logits, "logits") is logits


@pytest.mark.parametrize("spec", OUTPUTS)
def test_restricted_outputs_are_finite_and_keep_each_records_class_order(spec):
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 30, (200, 6))
    logits[:5] *= 100  # far past float32 (and float64) underflow of the probabilities
    restricted = restrict_logits(logits, spec)
    assert np.isfinite(restricted).all()
    i, j = np.triu_indices(6, 1)
    higher = logits[:, i] > logits[:, j]
    # where the model ranks class i above j, the API never ranks it below (ties allowed)
    assert (restricted[:, i][higher] >= restricted[:, j][higher]).all()
    assert (restricted[:, j][~higher] >= restricted[:, i][~higher]).all()


@pytest.mark.parametrize(
    "spec", ["rounded:x", "rounded:0", "rounded:16", "top-k:0", "top-k", "probs", "labels"]
)
def test_bad_outputs_are_refused_naming_the_setting(spec):
    with pytest.raises(MiakitError, match=r"query\.output"):
        parse_output(spec)
    with pytest.raises(MiakitError, match=r"query\.output"):
        load_config(None, [f"query.output={spec}"])


def test_top_k_must_leave_a_class_out():
    check_output("top-k:9", 10)
    with pytest.raises(MiakitError, match="top-k:10 returns every class"):
        check_output("top-k:10", 10)


def test_plan_refuses_a_bad_top_k_before_writing_anything(tmp_path, tiny_config):
    config = tiny_config.model_copy(deep=True)
    config.query.output = "top-k:10"  # digits has 10 classes
    with pytest.raises(MiakitError, match="top-k"):
        pipeline.plan(config, RunDir(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.yaml").exists()


def test_signals_restrict_what_every_transform_reads():
    _, logits, labels, keep = random_signals(models=4, records=12, augmentations=2)
    restricted = Signals.from_arrays(logits, labels, keep, output="rounded:2")
    np.testing.assert_array_equal(
        restricted.read_logits([1, 2]), restrict_logits(logits[[1, 2]], "rounded:2")
    )
    direct = make_attack("loss").score(restricted, 0, [])
    by_hand = [
        -np.mean([-hand_restricted(list(z), "rounded:2")[y] + math.log(sum(
            math.exp(v) for v in hand_restricted(list(z), "rounded:2")))
            for z in logits[0, n]])
        for n, y in enumerate(labels)
    ]  # fmt: skip
    np.testing.assert_allclose(direct, by_hand, rtol=1e-10)


@pytest.mark.parametrize("spec", OUTPUTS)
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_is_finite_on_every_output_or_says_why(name, spec):
    _, logits, labels, keep = random_signals(models=8, records=60, augmentations=2, seed=3)
    traces = np.random.default_rng(3).gamma(2.0, 0.5, (8, 6, 60))
    features = np.random.default_rng(4).normal(0, 1, (60, 3))
    signals = Signals.from_arrays(logits, labels, keep, traces, output=spec, features=features)
    attack = make_attack(name)
    reason = attack.unavailable(signals)
    if spec == "label" and attack.output_needs == "scores":
        assert reason is not None and "label" in reason
    if reason is not None:
        return
    scores = attack.score_leave_one_out(signals, [0, 3])
    assert np.isfinite(scores).all()


def test_a_label_only_run_scores_or_skips_every_attack_with_its_reason(
    tmp_path, tiny_config, monkeypatch
):
    config = tiny_config.model_copy(deep=True)
    config.split.num_models, config.train.epochs = 4, 3  # seconds: what is checked is the flow
    config.query.output = "label"
    config.attacks = ["loss", "lira-offline", "qmia", "gap", "label-augmentation"]
    run = RunDir(tmp_path / "run")
    pipeline.audit(config, run)
    stored = json.loads(run.metrics_json.read_text())
    assert set(stored["attacks"]) == {"gap"}
    skipped = stored["skipped"]
    assert set(skipped) == {"loss", "lira-offline", "qmia", "label-augmentation"}
    for name in ("loss", "lira-offline", "qmia"):
        assert "query.output=label" in skipped[name]
    assert "query augmentations" in skipped["label-augmentation"]
    assert not run.scores("loss").exists()
    report = (run.root / "report.html").read_text()
    assert "Skipped attacks" in report and "query.output=label" in report
    shutil.copytree(run.root, tmp_path / "label")

    # another output: the attacks run again, nothing is retrained or re-queried
    calls = []
    monkeypatch.setattr(model_jobs, "train_models", lambda *a, **k: calls.append("train"))
    monkeypatch.setattr(model_jobs, "query_models", lambda *a, **k: calls.append("query"))
    config.query.output = "rounded:2"
    pipeline.audit(config, run)
    assert calls == []
    stored = json.loads(run.metrics_json.read_text())
    assert set(stored["attacks"]) == {"loss", "lira-offline", "qmia", "gap"}
    assert set(stored["skipped"]) == {"label-augmentation"}
    assert json.loads((run.scores_dir / "loss.json").read_text())["inputs"]["output"] == "rounded:2"
    assert pipeline.attack(run, config) == []  # a rerun rewrites nothing

    # compare shows each run's output, and the attacks a run skipped with why
    comparison = pipeline.compare([run, RunDir(tmp_path / "label")], tmp_path / "compare")
    assert list(comparison.privacy_utility["output"]) == ["rounded:2", "label"]
    assert "per-class scores" in comparison.path.read_text()


@pytest.mark.parametrize("name", ["rmia", "rmia-offline"])
def test_rmia_reads_logits_with_its_taylor_signal_and_probabilities_with_softmax(name):
    """The Taylor soft-margin changes when the logits shift by a constant, which is all that
    log-probabilities lose; RMIA's softmax signal ignores the shift."""
    _, logits, labels, keep = random_signals(models=8, records=60, seed=5)
    full = Signals.from_arrays(logits, labels, keep)
    shifted = Signals.from_arrays(logits - 7.0, labels, keep)
    probabilities = Signals.from_arrays(logits, labels, keep, output="probabilities")
    taylor, softmax = make_attack(name), make_attack(name, {"signal": "softmax"})
    assert not np.array_equal(
        taylor.score_leave_one_out(full, [0]), taylor.score_leave_one_out(shifted, [0])
    )
    assert "signal=softmax" in taylor.unavailable(probabilities)
    assert softmax.unavailable(probabilities) is None
    np.testing.assert_array_equal(
        softmax.score_leave_one_out(full, [0]), softmax.score_leave_one_out(probabilities, [0])
    )


def test_plan_refuses_a_label_output_no_chosen_attack_can_read(tmp_path, tiny_config):
    config = tiny_config.model_copy(deep=True)
    config.query.output = "label"  # the fixture's attacks: loss and LiRA, all need scores
    with pytest.raises(MiakitError, match=r"add one that can.*gap"):
        pipeline.plan(config, RunDir(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.yaml").exists()
