"""A run or config received from someone else: loading it runs no code (skops files admit exact
types only), code a config names runs only with an opt-in given outside the config file, derived
files edited by hand are stale, and temporary files of killed writers never accumulate."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
from typer.testing import CliRunner

from miakit import pipeline
from miakit.cli import app
from miakit.config import load_config
from miakit.errors import MiakitError
from miakit.estimators import FITTED_PARTS
from miakit.models.sklearn_model import load_estimator, save_estimator
from miakit.store import RunDir, atomic_path, clear_leftovers, file_stamp, save_json

SRC = Path(__file__).resolve().parents[1] / "src" / "miakit"
RF = "sklearn.ensemble.RandomForestClassifier"
FOREST = [
    "data.name=breast-cancer",
    "model.arch=sklearn",
    f"model.estimator={RF}",
    "model.params={n_estimators: 3}",
    "split.num_models=4",
    "attacks=[loss, lira-offline]",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished audit of 4 small forests on breast cancer (about 3 s): (config, root)."""
    config = load_config(None, FOREST)
    root = tmp_path_factory.mktemp("trust") / "run"
    pipeline.audit(config, RunDir(root), log=None)
    return config, root


# --- 1. skops files admit exact types only ----------------------------------------------------


class Payload:
    """Unpickling it writes the marker file: what a pickle inside a hostile file would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _json(value) -> dict:
    return {
        "__class__": type(value).__name__,
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _call(module: str, name: str, *args) -> dict:
    """A skops node that calls module.name(*args) when it is constructed."""
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [_json(a) for a in args],
        },
    }


def _write_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def _payloads(tmp: Path, marker: Path) -> dict[str, dict]:
    """Hostile nodes, each calling a callable of a package skops files legitimately use."""
    pickled = tmp / "evil.npy"
    np.save(pickled, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    dumped = tmp / "evil.joblib"
    joblib.dump(Payload(marker), dumped)
    with open(tmp / "evil.pkl", "wb") as f:
        pickle.dump(Payload(marker), f)
    return {
        "numpy.testing.runstring": _call("numpy.testing", "runstring", _write_code(marker), {}),
        "numpy.load": _call("numpy", "load", str(pickled), None, True),
        "joblib.load": _call("joblib", "load", str(dumped)),
        "scipy.io.savemat": _call("scipy.io", "savemat", str(marker), {}),
        "builtins.exec": _call("builtins", "exec", _write_code(marker)),
        "builtins.eval": _call("builtins", "eval", f"exec({_write_code(marker)!r})"),
        "pandas.read_pickle": _call("pandas", "read_pickle", str(tmp / "evil.pkl")),
    }


def _plant(path: Path, node: dict, meta: Path | None = None) -> None:
    """Insert `node` as an attribute of the estimator in the skops file at `path` (a zip), and
    update the model's meta.json weight stamp as a sender of the whole run would."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(files["schema.json"])
    attributes = schema["content"]["content"]
    attributes["payload"] = node
    schema["content"]["key_types"]["content"].append(_json("payload"))
    files["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    if meta is not None:
        record = json.loads(meta.read_text())
        record["weights"] = file_stamp(path)
        save_json(meta, record)


PAYLOADS = [
    "numpy.testing.runstring",
    "numpy.load",
    "joblib.load",
    "scipy.io.savemat",
    "builtins.exec",
    "builtins.eval",
    "pandas.read_pickle",
]


@pytest.mark.parametrize("name", PAYLOADS)
def test_each_payload_runs_when_its_type_is_trusted(tmp_path, run_copy, name):
    """The payloads are live: skops, told to trust what the file asks for, runs each one (so the
    refusals below are what stops them)."""
    _, run = run_copy
    marker = tmp_path / "ran"
    path = run.estimator(0)
    _plant(path, _payloads(tmp_path, marker)[name])
    assert name in skops.io.get_untrusted_types(file=path)
    with contextlib.suppress(Exception):  # what the call returns may fail as an attribute
        skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert marker.exists()


def _load_directly(config, run: RunDir) -> None:
    model = config.model
    load_estimator(run.estimator(0), model.estimator, model.standardize)


def _cli(*args: str):
    def command(config, run: RunDir) -> None:
        run.logits(0).unlink()  # model 0 must be queried again, loading its estimator
        result = CliRunner().invoke(
            app,
            [*args, str(run.root)]
            if args[0] == "query"
            else [*args, "--out", str(run.root), *[f"--set={s}" for s in FOREST]],
            env={"COLUMNS": "1000"},  # the message on one line, as it is
        )
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert result.exit_code == 2 and len(errors) == 1, result.output
        raise MiakitError(errors[0].removeprefix("error: "))

    return command


#: Every way a saved estimator is loaded: a new loader of skops files must be added here (and
#: `test_skops_files_are_loaded_in_one_place` keeps it going through load_estimator).
LOADERS = {
    "load_estimator": _load_directly,
    "miakit query": _cli("query"),
    "miakit audit": _cli("audit"),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("name", PAYLOADS)
def test_hostile_skops_files_run_nothing_and_name_the_file_and_type(
    tmp_path, run_copy, name, loader
):
    config, run = run_copy
    marker = tmp_path / "ran"
    _plant(run.estimator(0), _payloads(tmp_path, marker)[name], run.meta(0))
    with pytest.raises(MiakitError) as refused:
        LOADERS[loader](config, run)
    message = str(refused.value).strip()
    assert "\n" not in message
    assert f"{run.estimator(0)} asks for type" in message and name in message
    assert not marker.exists()


def test_skops_files_are_loaded_in_one_place():
    """skops.io.load is called by load_estimator alone, so every loader checks exact types."""
    calls = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        calls += [
            (path.name, m.start()) for m in re.finditer(r"skops\.io\.load\(|import load\b", text)
        ]
    assert [name for name, _ in calls] == ["sklearn_model.py"]
    source = (SRC / "models" / "sklearn_model.py").read_text()
    start = source.index("def load_estimator")
    assert start < calls[0][1] < source.index("\ndef ", start + 1)


#: Small params for each class of FITTED_PARTS (and the settings that change its fitted parts).
SMALL = {
    "sklearn.ensemble.RandomForestClassifier": [{"n_estimators": 3}],
    "sklearn.ensemble.ExtraTreesClassifier": [{"n_estimators": 3}],
    "sklearn.ensemble.GradientBoostingClassifier": [{"n_estimators": 3}],
    "sklearn.svm.SVC": [{"probability": True}],
    "sklearn.neural_network.MLPClassifier": [
        {"max_iter": 3, "solver": solver} for solver in ("adam", "sgd", "lbfgs")
    ],
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")  # SVC's
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("estimator", list(FITTED_PARTS))
def test_every_allowed_estimator_loads_back(tmp_path, estimator, standardize):
    """FITTED_PARTS lists what each class's saved file holds, binary and multiclass: fitted,
    saved and loaded back, its probabilities are the same."""
    from miakit.models.sklearn_model import new_estimator

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    for classes, params in itertools.product((2, 3), SMALL.get(estimator, [{}])):
        y = np.arange(60) % classes
        fitted = new_estimator(estimator, params, standardize, seed=0).fit(x, y)
        save_estimator(tmp_path / "e.skops", fitted)
        loaded = load_estimator(tmp_path / "e.skops", estimator, standardize)
        np.testing.assert_array_equal(loaded.predict_proba(x), fitted.predict_proba(x))


def test_a_file_of_another_estimator_class_is_refused(tmp_path):
    from miakit.models.sklearn_model import new_estimator

    x, y = np.eye(4), np.array([0, 1, 0, 1])
    save_estimator(tmp_path / "e.skops", new_estimator(RF, {}, False, seed=0).fit(x, y))
    lr = "sklearn.linear_model.LogisticRegression"
    with pytest.raises(MiakitError, match=r"asks for type sklearn\.ensemble\._forest\.Random"):
        load_estimator(tmp_path / "e.skops", lr, False)


def test_plan_refuses_an_estimator_whose_files_cannot_be_loaded(tmp_path):
    config = load_config(None, [*FOREST[:2], "model.estimator=sklearn.cluster.KMeans"])
    with pytest.raises(
        MiakitError, match=r"model\.estimator: 'sklearn\.cluster\.KMeans' is not one"
    ):
        pipeline.plan(config, RunDir(tmp_path / "run"), log=None)


# --- 2. code a config names runs only with an opt-in from outside the config file ------------

NET = """
from pathlib import Path
from torch import nn

Path(__file__).with_name("imported").write_text("module")


def make_net(input_shape, num_classes):
    Path(__file__).with_name("built").write_text("factory")
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], 8), nn.ReLU(),
                         nn.Linear(8, num_classes))
"""


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A package on the path whose __init__ and module record that they ran; model.arch names
    its factory. Yields (settings, folder of the markers)."""
    name = f"usercode_{tmp_path.name[-12:].replace('-', '_')}"
    package = tmp_path / "code" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('package').write_text('ran')\n"
    )
    (package / "net.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.delenv("MIAKIT_ALLOW_CODE", raising=False)
    yield (
        [
            f"model.arch=python:{name}.net:make_net",
            "data.subsample=120",
            "split.num_models=4",
            "train.epochs=1",
            "attacks=[loss]",
        ],
        package,
    )
    for module in [m for m in sys.modules if m.split(".")[0] == name]:
        del sys.modules[module]


def _ran(package: Path) -> list[str]:
    return sorted(p.name for p in package.iterdir() if p.name in {"package", "imported", "built"})


def _cli_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def test_a_config_naming_code_is_refused_without_the_opt_in(tmp_path, user_code):
    settings, package = user_code
    with pytest.raises(MiakitError) as refused:
        pipeline.plan(load_config(None, settings), RunDir(tmp_path / "run"), log=None)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("model.arch: 'python:")
    assert "--allow-code" in message and "MIAKIT_ALLOW_CODE=1" in message
    assert not (tmp_path / "run" / "run.yaml").exists()
    assert _ran(package) == []  # not even the package's __init__
    wide = {"COLUMNS": "1000"}
    result = CliRunner().invoke(
        app, ["audit", "--out", str(tmp_path / "cli"), *[f"--set={s}" for s in settings]], env=wide
    )
    assert result.exit_code == 2 and _cli_lines(result) == [f"error: {message}"]
    assert _ran(package) == [] and not (tmp_path / "cli" / "run.yaml").exists()
    single = ["single-point", "--out", str(tmp_path / "single"), f"--set={settings[0]}"]
    result = CliRunner().invoke(app, single, env=wide)  # after its progress bars' first lines
    assert result.exit_code == 2 and _cli_lines(result)[-1] == f"error: {message}"
    assert _ran(package) == [] and not (tmp_path / "single").exists()


@pytest.mark.parametrize("opt_in", ["--allow-code", "--set", "environment"])
def test_each_opt_in_runs_the_code_and_none_is_kept_in_the_run(
    tmp_path, user_code, opt_in, monkeypatch, one_thread
):
    settings, package = user_code
    root = tmp_path / "run"
    args = ["audit", "--out", str(root), *[f"--set={s}" for s in settings]]
    if opt_in == "environment":
        monkeypatch.setenv("MIAKIT_ALLOW_CODE", "1")
    args += {"--allow-code": ["--allow-code"], "--set": ["--set=execution.allow_code=true"]}.get(
        opt_in, []
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _ran(package) == ["built", "imported", "package"]
    assert "allow_code" not in (root / "run.yaml").read_text()
    if opt_in == "environment":
        monkeypatch.delenv("MIAKIT_ALLOW_CODE")
    assert "MIAKIT_ALLOW_CODE" not in os.environ  # the opt-in ends with the command
    # a resumed run needs the opt-in again: train and query refuse, status imports nothing
    for stale in range(4):
        run = RunDir(root)
        run.meta(stale).unlink()
    for package_file in ("package", "imported", "built"):
        (package / package_file).unlink()
    for name in [m for m in sys.modules if m.startswith(package.name)]:
        del sys.modules[name]
    assert CliRunner().invoke(app, ["status", str(root)]).exit_code == 0
    for command in ("train", "query"):
        refused = CliRunner().invoke(app, [command, str(root)], env={"COLUMNS": "1000"})
        assert refused.exit_code == 2 and "--allow-code" in refused.output, refused.output
        assert len(_cli_lines(refused)) == 1
    assert _ran(package) == []
    resumed = CliRunner().invoke(app, ["train", str(root), "--allow-code"])
    assert resumed.exit_code == 0 and "trained 4 models" in resumed.output, resumed.output


@pytest.mark.slow  # two spawned workers each import torch: about 40 s on 2 loaded cores
def test_worker_processes_inherit_the_opt_in(tmp_path, user_code):
    settings, package = user_code
    workers = ["--set=execution.executor=processes", "--set=execution.workers=2"]
    args = ["audit", "--out", str(tmp_path / "run"), *[f"--set={s}" for s in settings], *workers]
    result = CliRunner().invoke(app, [*args, "--allow-code"])
    assert result.exit_code == 0, result.output
    assert _ran(package) == ["built", "imported", "package"]
    assert "MIAKIT_ALLOW_CODE" not in os.environ


def test_the_opt_in_changes_no_content_hash(user_code):
    settings, package = user_code
    without = load_config(None, settings)
    with_it = load_config(None, [*settings, "execution.allow_code=true"])
    assert with_it.execution.allow_code and not without.execution.allow_code
    assert with_it.hash() == without.hash()
    assert with_it.training_inputs() == without.training_inputs()  # the module's source hash
    assert _ran(package) == []  # found and hashed without importing it


def test_a_file_cannot_opt_itself_in(tmp_path, user_code):
    settings, package = user_code
    arch = settings[0].split("=", 1)[1]
    config = tmp_path / "received.yaml"
    config.write_text(f"model: {{arch: '{arch}'}}\nexecution: {{allow_code: true}}\n")
    with pytest.raises(MiakitError, match=r"received\.yaml: execution\.allow_code cannot be set"):
        load_config(config)
    # nor a received run whose run.yaml was given the setting
    root = tmp_path / "run"
    pipeline.plan(load_config(None, FOREST), RunDir(root), log=None)
    text = (root / "run.yaml").read_text()
    (root / "run.yaml").write_text(text.replace("execution:\n", "execution:\n  allow_code: true\n"))
    with pytest.raises(MiakitError, match=r"run\.yaml: execution\.allow_code cannot be set"):
        pipeline.load_plan(RunDir(root))
    assert _ran(package) == []


# --- 6. derived files edited by hand are stale ------------------------------------------------


def _edit_json(path: Path, edit) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _one_error_line(result, *words: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_hand_edited_auc_is_stale_refused_by_report_and_recomputed_by_audit(run_copy):
    config, run = run_copy
    auc = json.loads(run.metrics_json.read_text())["attacks"]["loss"]["auc"]
    assert auc["mean"] != 0.999

    def edit(document):
        document["attacks"]["loss"]["auc"]["mean"] = 0.999

    _edit_json(run.metrics_json, edit)
    wide = {"COLUMNS": "1000"}
    result = CliRunner().invoke(app, ["report", str(run.root)], env=wide)
    _one_error_line(result, "metrics.json is stale", "content was changed", "miakit evaluate")
    with pytest.raises(MiakitError, match="content was changed"):
        pipeline.verdict(run)  # nor is it read for the verdict (or compare)
    assert "0.999" not in (run.root / "report.html").read_text()
    pipeline.audit(config, run, log=None)  # a rerun recomputes it
    assert json.loads(run.metrics_json.read_text())["attacks"]["loss"]["auc"] == auc
    assert CliRunner().invoke(app, ["report", str(run.root)]).exit_code == 0


@pytest.mark.parametrize(
    "name",
    [
        "metrics.csv",
        "plots/roc_loss.png",
        "tables/vulnerability_loss.parquet",
    ],
)
def test_edited_outputs_of_evaluate_are_stale_and_evaluate_rewrites_them(run_copy, name):
    config, run = run_copy
    path = run.root / name
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])  # edited, or cut short by a copy
    result = CliRunner().invoke(app, ["report", str(run.root)], env={"COLUMNS": "1000"})
    _one_error_line(result, "metrics.json is stale", f"{name} was changed", "miakit evaluate")
    pipeline.evaluate(run, config)
    assert path.read_bytes() != original[: len(original) // 2]
    if name.endswith(".csv"):
        assert path.read_bytes() == original
    assert CliRunner().invoke(app, ["report", str(run.root)]).exit_code == 0


# --- 7. every stage clears what killed writers left in the folders it writes ----------------


def _plant_leftovers(folder: Path, name: str) -> tuple[Path, Path]:
    """A killed writer's temporary file (as atomic_path names them) and a user's file that only
    looks like one (no leading dot)."""
    folder.mkdir(parents=True, exist_ok=True)
    left, kept = folder / f".{name}.abc123.tmp", folder / f"{name}.tmp"
    left.write_bytes(b"half a file")
    kept.write_text("the user's")
    return left, kept


def _compare(config, run: RunDir) -> None:
    other = run.root.parent / "other"
    shutil.copytree(run.root, other)
    pipeline.compare([run, RunDir(other)], run.root.parent / "compared")


#: stage → (the folders it writes, relative to the run's parent; how to run it)
STAGES = {
    "plan": (["run"], lambda config, run: pipeline.plan(config, run, log=None)),
    "attack": (["run/scores"], lambda config, run: pipeline.attack(run, config)),
    "evaluate": (
        ["run", "run/plots", "run/tables"],
        lambda config, run: pipeline.evaluate(run, config),
    ),
    "report": (["run"], lambda config, run: pipeline.report(run)),
    "compare": (["compared"], _compare),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_clears_what_killed_writers_left(run_copy, stage):
    config, run = run_copy
    folders, run_stage = STAGES[stage]
    planted = [_plant_leftovers(run.root.parent / f, "roc_loss.png") for f in folders]
    run_stage(config, run)
    for left, kept in planted:
        assert not left.exists() and kept.exists()


def test_single_point_clears_what_killed_writers_left(tmp_path, one_thread):
    from miakit.config import SinglePointConfig
    from miakit.single_point import run_single_point

    config = load_config(
        None,
        [
            "data.name=digits", "model.hidden=[8]", "train.epochs=1", "n_iterations=2",
            "eval_pairs=1", "subset_size=50", "targets.indices=[0]",
        ],
        schema=SinglePointConfig,
    )  # fmt: skip
    left, kept = _plant_leftovers(tmp_path / "out", "hist_0.png")
    run_single_point(config, tmp_path / "out")
    assert (tmp_path / "out" / "hist_0.png").is_file()
    assert not left.exists() and kept.exists()
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_a_running_writers_temporary_file_is_kept(tmp_path):
    """Another process of the same run may be writing there: only files of ended writers go."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(done.stdout)
    with atomic_path(tmp_path / "metrics.json") as live:
        tag = re.search(r"\.([0-9a-f]{16})-(\d+)-(\w+)\.", live.name)
        dead = tmp_path / f".x.npy.{tag[1]}-{dead_pid}-{tag[3]}.abc.tmp"
        foreign = tmp_path / f".x.npy.{'0' * 16}-{dead_pid}-1.abc.tmp"
        for path in (dead, foreign):
            path.write_bytes(b"")
        clear_leftovers(tmp_path)
        assert live.exists() and foreign.exists() and not dead.exists()
        live.write_text("{}")
    assert (tmp_path / "metrics.json").read_text() == "{}"
    os.utime(foreign, (0, 0))  # another host's, a day old: gone too
    clear_leftovers(tmp_path)
    assert not foreign.exists()
