"""What the `miakit` command prints: progress lines in a pipe, the results table within 80
columns, the verdict, what Ctrl-C leaves, status of brought-in runs, and compare's table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from miakit import cli, model_jobs
from miakit.cli import app
from miakit.progress import ProgressLines
from miakit.store import RunDir
from tests.synthetic import balanced_keep_matrix
from tests.test_pipeline import CountingTrainer
from tests.test_report import write_run

TINY = [
    "--set",
    "split.num_models=4",
    "--set",
    "model.hidden=[16]",
    "--set",
    "train.epochs=3",
    "--set",
    "attacks=[loss, lira-online, lira-offline-fixed, attack-r]",
]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    with pytest.MonkeyPatch.context() as mp:
        # rich sizes its output to the terminal that runs the tests, if any: an 80-column one
        mp.setattr(cli, "console", Console(emoji=False, width=80))
        result = CliRunner().invoke(app, ["audit", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_audit_in_a_pipe_prints_progress_lines(audited):
    _, output = audited
    assert "training: 0/4 (0%)" in output
    assert "training: 4/4 (100%)" in output and "done in" in output
    assert "querying: 4/4 (100%)" in output
    assert "evaluating: 4/4 (100%)" in output


def test_results_table_fits_80_columns_with_every_figure(audited):
    _, output = audited
    assert [line for line in output.splitlines() if len(line) > 80] == []
    rows = [line for line in output.splitlines() if line.lstrip().startswith("lira-offline-fixed")]
    # AUC and TPR at the four FPRs: each a figure, or n/m where the data cannot resolve the FPR
    assert len(rows) == 1 and rows[0].count("±") + rows[0].count("n/m") == 5
    if "n/m" in rows[0]:
        assert "n/m: not measurable: FPR" in output
    assert "…" not in output


def test_audit_ends_with_the_verdict(audited):
    out, output = audited
    verdict = output[output.index("Verdict") :]
    assert "Strongest attack:" in verdict and "Next step:" in verdict
    assert "smallest FPR these data can measure" in verdict
    page = (out / "report.html").read_text()
    assert page.index("Verdict") < page.index("Attacks: mean over targets")


def test_ctrl_c_says_how_many_models_are_saved_and_rerunning_resumes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = CountingTrainer(interrupt_after=3)
    monkeypatch.setattr(model_jobs, "train_model", trainer)
    result = CliRunner().invoke(app, ["audit", "--out", str(out), *TINY])
    assert result.exit_code == 130
    assert "2 of 4 models are trained and saved" in result.output
    assert "Rerun the same command to resume" in result.output
    monkeypatch.setattr(model_jobs, "train_model", CountingTrainer())
    result = CliRunner().invoke(app, ["audit", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert model_jobs.train_model.calls == 2  # only the models that were not saved


def test_status_of_brought_in_models_says_what_the_run_has(tmp_path):
    run = RunDir(tmp_path)
    keep = balanced_keep_matrix(4, 10)
    np.save(run.keep, keep)
    np.save(run.labels, np.zeros(10, dtype=np.int64))
    for m in range(3):
        run.model_dir(m).mkdir(parents=True)
        np.save(run.logits(m), np.zeros((10, 1, 2), dtype=np.float32))
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "3 of 4 (missing, e.g. model 3)" in result.output
    assert "miakit attack" in result.output and "plan it first" not in result.output


def test_compare_prints_its_table_and_refuses_other_data_sets(tmp_path):
    a, b = write_run(tmp_path / "a").root, write_run(tmp_path / "b", seed=1).root
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith(" a ") or line.startswith("a ") for line in lines)
    assert "strongest attack" in result.output and "TPR@0.1%" in result.output
    pool = json.loads((b / "pool.json").read_text()) | {"name": "other"}
    (b / "pool.json").write_text(json.dumps(pool))
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "different data sets" in result.output


def test_progress_lines_come_at_the_interval_with_rate_and_time_left(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("miakit.progress.time.monotonic", lambda: clock[0])
    printed = []

    class Sink:
        def print(self, text, **_):
            printed.append(text)

    lines = ProgressLines(Sink(), interval=10)
    task = lines.add_task("training", total=100)
    for second in range(1, 51):  # one model a second
        clock[0] = float(second)
        lines.advance(task)
    assert printed[0] == "training: 0/100 (0%)"
    assert len(printed) == 1 + 5  # at 10, 20, 30, 40, 50 s
    assert printed[-1] == "training: 50/100 (50%), 1 per s, about 50s left"
    clock[0] = 100.0
    lines.update(task, completed=100)
    assert printed[-1] == "training: 100/100 (100%), 1 per s, done in 1m40s"
