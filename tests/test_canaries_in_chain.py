"""A run with canaries: evaluate leaves them out of the membership metrics (checked against AUCs
computed here by brute force over pairs), and audit.json sits in the content-hash chain (stale
when its scores or dp_audit settings change; the report stale when audit.json changes)."""

import json
import shutil

import numpy as np
import pytest
import yaml

from miakit import pipeline
from miakit.chain import audit_stale, report_stale
from miakit.config import load_config
from miakit.plan import evaluation_design
from miakit.privacy_audit import audited_attacks
from miakit.store import RunDir

from .test_chain import invoke, snapshot


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """16 small MLPs on digits with 100 mislabelled canaries, audited end to end."""
    config = load_config(
        None,
        [
            "split.num_models=16", "model.hidden=[32]", "train.epochs=6", "train.lr=0.01",
            "attacks=[loss, lira-online]", "dp_audit.canaries.count=100",
        ],
    )  # fmt: skip
    root = tmp_path_factory.mktemp("canaries") / "run"
    pipeline.audit(config, RunDir(root))
    return config, root


def brute_force_auc(scores, members):
    """P[member score > non-member score] + ½·P[tie], over every (member, non-member) pair."""
    pos, neg = scores[members][:, None], scores[~members][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def expected_aucs(run, scores, records):
    keep = np.load(run.keep)
    targets = json.loads(run.split.read_text())["targets"]
    return [brute_force_auc(scores[i, records], keep[t, records]) for i, t in enumerate(targets)]


def test_metrics_leave_the_canaries_out(finished, tmp_path):
    config, root = finished
    run = RunDir(root)
    metrics = json.loads(run.metrics_json.read_text())
    audit = json.loads((root / "audit.json").read_text())
    canaries = np.array(audit["canary_records"])
    assert metrics["canaries_left_out"] == {"count": 100, "records": canaries.tolist()}
    others = np.setdiff1d(np.arange(1797), canaries)
    for name in ["loss", "lira-online"]:
        scores = np.load(run.scores(name)).astype(np.float64)
        got = metrics["attacks"][name]["auc"]["per_target"]
        np.testing.assert_allclose(got, expected_aucs(run, scores, others), rtol=0, atol=1e-9)
        with_canaries = expected_aucs(run, scores, np.arange(1797))
        assert not np.allclose(got, with_canaries, rtol=0, atol=1e-6)  # the canaries count
    assert "leave out the 100 canaries" in (root / "report.html").read_text()
    assert set(audit["attacks"]) == {"loss", "lira-online"}  # audit.json still scores them

    # evaluate.include_canaries puts them back
    copy = RunDir(tmp_path / "run")
    shutil.copytree(root, copy.root)
    config.evaluate.include_canaries = True
    pipeline.evaluate(copy, config)
    config.evaluate.include_canaries = False
    metrics = json.loads(copy.metrics_json.read_text())
    assert metrics["canaries_left_out"]["count"] == 0
    scores = np.load(copy.scores("loss")).astype(np.float64)
    np.testing.assert_allclose(
        metrics["attacks"]["loss"]["auc"]["per_target"],
        expected_aucs(copy, scores, np.arange(1797)),
        rtol=0,
        atol=1e-9,
    )


def test_audit_json_is_current_and_a_rerun_writes_nothing(run_copy):
    _, run = run_copy
    before = snapshot(run.root)
    result = invoke("audit-dp", run.root)
    assert result.exit_code == 0, result.output
    assert invoke("report", run.root).exit_code == 0
    assert snapshot(run.root) == before


def test_audit_json_is_stale_when_its_scores_change(run_copy):
    config, run = run_copy
    design = evaluation_design(run, config, 16)
    names = audited_attacks(config)
    assert audit_stale(run, config, names, design) is None
    scores = np.load(run.scores("loss"))
    np.save(run.scores("loss"), scores + 1.0)
    assert (
        audit_stale(run, config, names, design) == "scores/loss.npy changed since it was computed"
    )
    np.save(run.scores("loss"), scores)
    assert audit_stale(run, config, names, design) is None


def test_report_refuses_a_stale_audit_json_naming_audit_dp(run_copy):
    _, run = run_copy
    settings = yaml.safe_load(run.run_yaml.read_text())
    settings["dp_audit"]["beta"] = 0.1
    run.run_yaml.write_text(yaml.safe_dump(settings))
    result = invoke("report", run.root)
    assert result.exit_code == 2, result.output
    assert "dp_audit.beta changed" in result.output and "miakit audit-dp" in result.output
    assert invoke("audit-dp", run.root).exit_code == 0
    assert json.loads((run.root / "audit.json").read_text())["beta"] == 0.1
    result = invoke("report", run.root)
    assert result.exit_code == 0, result.output


def test_a_hand_edited_audit_json_is_stale_and_audit_dp_recomputes_it(run_copy):
    _, run = run_copy
    assert report_stale(run, []) is None
    path = run.root / "audit.json"
    figures = json.loads(path.read_text())["attacks"]
    audit = json.loads(path.read_text())
    audit["attacks"]["loss"]["one_run"]["epsilon_lower"] = 123.0  # edited by hand
    path.write_text(json.dumps(audit))
    assert report_stale(run, []) == "audit.json changed since it was computed"
    before = (run.root / "report.html").read_text()
    result = invoke("report", run.root)
    assert result.exit_code == 2
    assert "audit.json is stale (its content was changed since it was written)" in result.output
    assert "miakit audit-dp" in result.output
    assert (run.root / "report.html").read_text() == before  # not served
    assert invoke("audit-dp", run.root).exit_code == 0
    assert json.loads(path.read_text())["attacks"] == figures
    assert invoke("report", run.root).exit_code == 0  # from the recomputed audit.json
