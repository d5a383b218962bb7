"""`miakit.Run` on a finished tiny audit: its figures as the CLI's files hold them, checked
against computations written here (scikit-learn's AUC, the verdict's own count), and refusals of
stale or missing inputs with the CLI's messages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

import miakit
from miakit import pipeline
from miakit.config import load_config
from miakit.store import RunDir

ATTACKS = ["loss", "lira-online", "lira-offline"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny audit (8 MLPs on digits, loss and LiRA); tests that change it use
    `run_copy`."""
    config = load_config(
        None,
        [
            "split.num_models=8",
            "model.hidden=[32]",
            "train.epochs=4",
            "train.lr=0.01",
            f"attacks=[{', '.join(ATTACKS)}]",
        ],
    )
    root = tmp_path_factory.mktemp("finished") / "run"
    pipeline.audit(config, RunDir(root), log=None)
    return config, root


def test_status_config_and_attacks(finished):
    _, root = finished
    run = miakit.Run(root)
    assert run.status["done"] == list(range(8))
    assert run.config.split.num_models == 8
    assert sorted(run.attacks) == sorted(ATTACKS)
    assert repr(run) == f"miakit.Run({str(root)!r})"


def test_metrics_are_metrics_csv(finished):
    _, root = finished
    got = miakit.Run(root).metrics
    stored = pd.read_csv(root / "metrics.csv")
    assert list(got.columns) == list(stored.columns)
    both = got.merge(stored, on=["attack", "metric"], suffixes=("", "_csv"), validate="1:1")
    assert len(both) == len(stored) == len(got)
    for column in ("mean", "std", "ci_low", "ci_high"):
        np.testing.assert_allclose(both[column].astype(float), both[f"{column}_csv"], rtol=1e-12)


def test_scores_and_roc_match_scikit_learn(finished):
    _, root = finished
    run = miakit.Run(root)
    keep = np.load(root / "keep.npy")
    scores = run.scores("lira-online")
    np.testing.assert_array_equal(scores, np.load(root / "scores" / "lira-online.npy"))
    roc = run.roc("lira-online")
    for t, curve in roc.groupby("target"):
        auc = np.trapezoid(curve["tpr"], curve["fpr"])
        assert auc == pytest.approx(roc_auc_score(keep[t], scores[t]), rel=1e-12)
        assert curve["fpr"].iloc[0] == 0 and curve["tpr"].iloc[-1] == 1
    auc = run.metrics.set_index(["attack", "metric"]).loc[("lira-online", "auc"), "mean"]
    mean_auc = np.mean([roc_auc_score(keep[t], scores[t]) for t in range(8)])
    assert auc == pytest.approx(mean_auc, rel=1e-12)


def test_records_are_the_verdicts_exposed_records(finished):
    _, root = finished
    run = miakit.Run(root)
    found = run.verdict
    table = run.records(found.attack)
    labels, keep = np.load(root / "labels.npy"), np.load(root / "keep.npy")
    assert len(table) == keep.shape[1] and table["rank"].tolist() == list(range(1, len(table) + 1))
    assert int(table["highly_vulnerable"].sum()) == found.exposed
    np.testing.assert_array_equal(table["label"], labels[table["record"]])
    np.testing.assert_array_equal(table["n_member"], keep[:, table["record"]].sum(axis=0))
    np.testing.assert_allclose(table["exposure"], table["tp"] / table["n_member"])
    top = table.head(len(found.top))
    assert top["record"].tolist() == found.top["record"].tolist()


def test_verdict_sentences_and_fields(finished):
    _, root = finished
    found = miakit.Run(root).verdict
    lines = found.sentences()
    assert lines[0].startswith(f"Strongest attack: {found.attack}")
    assert found.attack in ATTACKS and 0 <= found.auc.mean <= 1
    assert found.smallest_fpr == pytest.approx(1 / (~np.load(root / "keep.npy")).sum(axis=1).min())


def test_plot_report_and_jupyter_view(finished):
    _, root = finished
    run = miakit.Run(root)
    figure = run.plot_roc()
    assert isinstance(figure, Figure)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert all(any(a in label for label in legend) for a in ATTACKS)
    assert run.report() == root / "report.html" and (root / "report.html").is_file()
    view = run._repr_html_()
    assert "Strongest attack:" in view and "data:image/png;base64," in view


def test_stale_and_missing_inputs_are_refused_with_the_clis_messages(run_copy, tmp_path):
    _, run_dir = run_copy
    scores = run_dir.scores("loss")
    scores.write_bytes(scores.read_bytes()[:-8] + np.float64(7.0).tobytes())
    run = miakit.Run(run_dir.root)
    with pytest.raises(miakit.StaleInputs, match=r"is stale .*miakit attack .* --attacks loss"):
        run.scores("loss")
    with pytest.raises(miakit.StaleInputs, match="miakit attack"):
        _ = run.metrics
    assert "miakit attack" in run._repr_html_()  # the view says what to run, not a traceback
    with pytest.raises(miakit.MiakitError, match="unknown attack 'lira'"):
        run.scores("lira")
    with pytest.raises(miakit.MiakitError, match=r"neither run\.yaml"):
        miakit.Run(tmp_path / "nothing")


def test_a_run_of_brought_in_models(tmp_path):
    rng = np.random.default_rng(0)
    keep = np.argsort(rng.random((4, 50)), axis=0) < 2
    root = RunDir(tmp_path)
    np.save(root.keep, keep)
    np.save(root.labels, rng.integers(0, 3, 50))
    for m in range(4):
        root.model_dir(m).mkdir(parents=True)
        np.save(root.logits(m), rng.normal(size=(50, 1, 3)).astype(np.float32))
    run = miakit.Run(tmp_path)
    assert run.status["with logits"] == "4 of 4"
    pipeline.attack(root, run.config, ["loss"])
    pipeline.evaluate(root, run.config, ["loss"])
    assert json.loads(root.metrics_json.read_text())["attacks"]
    assert set(run.metrics["attack"]) == {"loss"}
