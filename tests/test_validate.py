"""plan's checks against the attacks themselves: the references each attack declares it needs
(`Attack.reference_needs`) are what its own code demands, and `attacks: all`."""

import numpy as np
import pytest

from miakit import pipeline
from miakit.attacks import ATTACKS, make_attack
from miakit.config import TrainConfig, load_config
from miakit.errors import MiakitError
from miakit.signals import Signals
from miakit.store import RunDir
from miakit.train.traces import LossTrace
from miakit.validate import check_design, resolve_attacks, trace_points

from .attack_inputs import LOGIT_ATTACKS
from .synthetic import balanced_keep_matrix


def signals_for(keep: np.ndarray) -> Signals:
    rng = np.random.default_rng(12345)  # not the keep matrix's seed: labels independent of it
    num_models, num_records = keep.shape
    labels = rng.integers(0, 3, num_records)
    logits = rng.normal(size=(num_models, num_records, 1, 3)).astype(np.float32)
    traces = rng.normal(size=(num_models, 5, num_records)).astype(np.float16)
    features = rng.normal(size=(num_records, 2))  # for qmia's regressor
    return Signals.from_arrays(logits, labels, keep, traces, features=features)


def test_every_registered_attack_declares_needs_plan_knows():
    assert all(set(cls.reference_needs) <= {"in", "out", "any"} for cls in ATTACKS.values())


#: the attacks of causal language models read per-token outputs (tests/test_text.py)


@pytest.mark.parametrize("name", sorted(LOGIT_ATTACKS))
def test_reference_needs_match_the_attack(name):
    """Two models, each record IN for one: every target's one reference is OUT where the
    target is IN and IN where it is OUT, so attacks needing IN or OUT references fail."""
    config = load_config(None, ["train.record_trace=true"])
    two = balanced_keep_matrix(2, 200)
    needs = set(ATTACKS[name].reference_needs) & {"in", "out"}
    attack = make_attack(name)
    if needs:
        with pytest.raises(MiakitError, match="reference"):
            attack.score_targets(signals_for(two), [0, 1], None)
        with pytest.raises(MiakitError, match=f"{name}.* need"):
            check_design(config, two, [0, 1], None, None, [name])
    else:
        scores = attack.score_targets(signals_for(two), [0, 1], None)
        assert scores.shape == (2, 200)
        check_design(config, two, [0, 1], None, None, [name])
    four = balanced_keep_matrix(4, 200)
    check_design(config, four, [0, 1, 2, 3], None, None, [name])
    assert attack.score_targets(signals_for(four), [0, 1, 2, 3], None).shape == (4, 200)


@pytest.mark.parametrize("name", ["lira-offline", "attack-r"])
def test_equal_reference_counts_need_a_reference_of_each_side_plan_knows(name):
    """A record IN for one model of four: for target 0, which is that one, every reference
    leaves OUT ones to fit on; with equal counts (as many of each side as its smaller side of
    references has) it fits on none, and plan says so as the attack would. Targets 1..3 have
    one of each side and are scored under both."""
    config = load_config(None, [])
    keep = balanced_keep_matrix(4, 200)
    keep[:, 0] = np.arange(4) == 0
    signals, targets = signals_for(keep), [0, 1, 2, 3]
    every = {name: {"reference_counts": "all"}}
    check_design(
        config.model_copy(update={"attack_options": every}), keep, targets, None, None, [name]
    )
    make_attack(name, every[name]).score_targets(signals, targets, None)
    with pytest.raises(MiakitError, match=f"{name} needs .*reference_counts: equal.*target 0"):
        check_design(config, keep, targets, None, None, [name])
    with pytest.raises(MiakitError, match="record 0 has none for target model 0"):
        make_attack(name).score_targets(signals, targets, None)
    check_design(config, keep, [1, 2, 3], None, None, [name])
    assert np.isfinite(make_attack(name).score_targets(signals, [1, 2, 3], None)).all()


def test_attacks_all_names_every_attack(tmp_path, tiny_config):
    assert resolve_attacks(["all"]) == LOGIT_ATTACKS
    assert resolve_attacks(["loss", "all"]) == ["loss", *(a for a in LOGIT_ATTACKS if a != "loss")]
    config = tiny_config.model_copy(update={"attacks": ["all"]})
    config.train.record_trace = True
    planned = pipeline.plan(config, RunDir(tmp_path / "run"))
    assert planned.config.attacks == LOGIT_ATTACKS
    assert "- lt-iqr" in (tmp_path / "run" / "run.yaml").read_text()


@pytest.mark.parametrize(("epochs", "every"), [(1, 1), (3, 2), (4, 2), (7, 3), (2, 5)])
def test_planned_trace_points_are_the_rows_training_records(epochs, every):
    """lt-iqr's window is checked at plan time against the rows the trainer will keep."""
    train = TrainConfig(epochs=epochs, trace_every=every, record_trace=True)
    recorder = LossTrace(every, epochs)
    assert trace_points(train) == sum(recorder.due(e) for e in range(epochs + 1))
    assert trace_points(TrainConfig(epochs=epochs, trace_every=every)) is None
