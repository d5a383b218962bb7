"""`miakit.audit`: configs as paths, dicts and AuditConfigs; in-memory data and models joining
the one pipeline (the run records them, the CLI resumes or clearly refuses); interruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import miakit
from miakit import model_jobs, pipeline
from miakit.cli import app
from miakit.config import load_config
from miakit.data.user import load_user
from miakit.store import RunDir

SMALL = {
    "split": {"num_models": 4},
    "model": {"hidden": [8]},
    "train": {"epochs": 1},
    "attacks": ["loss", "lira-offline"],
}


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:300], y[:300]


def test_a_dict_a_path_and_an_audit_config_give_one_run(tmp_path, one_thread):
    first = miakit.audit(SMALL, out=tmp_path / "dict", overrides=["data.subsample=200"])
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    again = miakit.audit(path, out=tmp_path / "path", overrides=["data.subsample=200"])
    config = load_config(path, ["data.subsample=200"])
    third = miakit.audit(config, out=tmp_path / "config")
    assert isinstance(first, miakit.Run)
    keep = [np.load(r.path / "keep.npy") for r in (first, again, third)]
    np.testing.assert_array_equal(keep[0], keep[1])
    np.testing.assert_array_equal(keep[0], keep[2])
    text = [(r.path / "run.yaml").read_text() for r in (first, again, third)]
    assert text[0] == text[1] == text[2]
    assert set(first.metrics["attack"]) == {"loss", "lira-offline"}


def test_bad_configs_are_the_clis_errors_and_leave_nothing(tmp_path):
    with pytest.raises(miakit.MiakitError, match=r"train\.lrr: unknown key"):
        miakit.audit({"train": {"lrr": 1}}, out=tmp_path / "a")
    with pytest.raises(miakit.MiakitError, match=r"config file .* does not exist"):
        miakit.audit(tmp_path / "missing.yaml", out=tmp_path / "b")
    with pytest.raises(miakit.MiakitError, match="unknown attack"):
        miakit.audit(
            {"attacks": ["lira"]}, out=tmp_path / "c", data=(np.ones((20, 3)), [0, 1] * 10)
        )
    assert not any(tmp_path.iterdir())


def test_in_memory_data_and_an_estimator_join_the_pipeline(tmp_path, digits):
    x, y = digits
    estimator = LogisticRegression(C=0.5, max_iter=300, random_state=7)
    config = {"split": {"num_models": 4}, "attacks": ["loss", "lira-online"]}
    run = miakit.audit(config, out=tmp_path / "run", data=(x, y), model=estimator)
    recorded = yaml.safe_load((run.path / "run.yaml").read_text())
    assert recorded["model"]["arch"] == "sklearn"
    assert recorded["model"]["estimator"] == "sklearn.linear_model.LogisticRegression"
    params = clone(estimator).get_params()
    del params["random_state"]  # miakit seeds each model
    assert recorded["model"]["params"] == params
    assert recorded["data"]["name"] == "user"
    stored = load_user(run.path / "data.npz")
    np.testing.assert_array_equal(stored.y, y)
    np.testing.assert_array_equal(stored.x, x.astype(np.float32))
    assert run.status["done"] == list(range(4))
    # the same call again writes nothing; the CLI resumes the run as recorded
    before = {p: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file()}
    miakit.audit(config, out=tmp_path / "run", data=(x, y), model=estimator)
    assert {p: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file()} == before
    result = CliRunner().invoke(app, ["train", str(run.path)])
    assert result.exit_code == 0 and "trained 0 models" in result.output


def test_an_estimator_outside_the_allow_list_or_with_objects_is_refused(tmp_path, digits):
    from sklearn.ensemble import BaggingClassifier, GradientBoostingClassifier

    class Mine(LogisticRegression):
        pass

    with pytest.raises(miakit.MiakitError, match=r"does not name the class|outside the allowed"):
        miakit.audit(SMALL, out=tmp_path / "a", data=digits, model=Mine())
    bagged = BaggingClassifier(estimator=LogisticRegression())  # not a class miakit loads
    with pytest.raises(miakit.MiakitError, match=r"BaggingClassifier' is not one of the estim"):
        miakit.audit(SMALL, out=tmp_path / "b", data=digits, model=bagged)
    boosted = GradientBoostingClassifier(init=LogisticRegression())  # an object as a parameter
    with pytest.raises(miakit.MiakitError, match=r"init=LogisticRegression.* not a plain"):
        miakit.audit(SMALL, out=tmp_path / "b", data=digits, model=boosted)
    with pytest.raises(miakit.MiakitError, match=r"data must be \(x, y\)"):
        miakit.audit(SMALL, out=tmp_path / "c", data=digits[0])
    with pytest.raises(miakit.MiakitError, match=r"data:y: expected 300 labels"):
        miakit.audit(SMALL, out=tmp_path / "d", data=(digits[0], digits[1][:-1]))
    assert not any(tmp_path.iterdir())


def tiny_net(input_shape, num_classes):
    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, num_classes))  # fmt: skip


def test_a_factory_trains_here_and_the_cli_refuses_to_resume_it(tmp_path, digits, one_thread):
    config = {**SMALL, "model": {}}
    run = miakit.audit(config, out=tmp_path / "run", data=digits, model=tiny_net)
    arch = yaml.safe_load((run.path / "run.yaml").read_text())["model"]["arch"]
    assert arch.startswith("memory:tiny_net@")
    weights = run.path / "models" / "0000" / "weights.safetensors"
    assert weights.is_file() and run.status["done"] == list(range(4))
    # a fresh process (the CLI) cannot build the models: it says how to resume instead
    from miakit.architectures import IN_MEMORY

    factory = IN_MEMORY.pop(arch)
    try:
        (run.path / "models" / "0001" / "meta.json").unlink()
        recorded = yaml.safe_load((run.path / "run.yaml").read_text())
        del recorded["config_hash"]
        (tmp_path / "again.yaml").write_text(yaml.safe_dump(recorded))
        result = CliRunner().invoke(app, ["audit", "--config", str(tmp_path / "again.yaml"),
                                          "--out", str(run.path)])  # fmt: skip
        said = " ".join(result.output.split())
        assert result.exit_code == 2
        assert "given to miakit.audit(model=...) in another Python process" in said
        assert "miakit.audit(..., model=<the same factory>)" in said
        assert not (run.path / "models" / "0001" / "meta.json").is_file()
        result = CliRunner().invoke(app, ["train", str(run.path)])
        assert result.exit_code == 2 and "another Python process" in " ".join(result.output.split())
        assert not (run.path / "models" / "0001" / "meta.json").is_file()
        # stages that build no model still work from the CLI
        assert CliRunner().invoke(app, ["status", str(run.path)]).exit_code == 0
    finally:
        IN_MEMORY[arch] = factory
    again = miakit.audit(config, out=tmp_path / "run", data=digits, model=tiny_net)
    assert again.status["done"] == list(range(4))


def test_an_edited_factory_has_another_arch_and_retrains():
    from miakit.architectures import register_factory

    def net(input_shape, num_classes):
        return torch.nn.Linear(input_shape[0], num_classes)

    first = register_factory(net)

    def net(input_shape, num_classes):  # the same name, edited
        return torch.nn.Linear(input_shape[0], num_classes, bias=False)

    assert register_factory(net) != first
    assert register_factory(tiny_net) == register_factory(tiny_net)


def test_a_factory_needs_the_local_executor(tmp_path, digits):
    with pytest.raises(miakit.MiakitError, match=r"execution\.executor: processes workers cannot"):
        miakit.audit({**SMALL, "model": {}, "execution": {"executor": "processes"}},
                     out=tmp_path / "run", data=digits, model=tiny_net)  # fmt: skip


def test_an_interrupted_audit_says_what_is_saved_and_resumes(tmp_path, capsys, one_thread):
    real = model_jobs.train_model
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_jobs, "train_model", interrupted)
        with pytest.raises(KeyboardInterrupt):
            miakit.audit(SMALL, out=tmp_path / "run", overrides=["data.subsample=200"])
    assert "interrupted: 2 of 4 models are trained and saved." in capsys.readouterr().err
    assert pipeline.trained_models(RunDir(tmp_path / "run")) == (2, 4)
    run = miakit.audit(SMALL, out=tmp_path / "run", overrides=["data.subsample=200"])
    assert run.status["done"] == list(range(4))
