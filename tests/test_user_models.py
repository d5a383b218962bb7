"""A user's own torch module as the model (model.arch python:module:factory), and a target
checkpoint trained elsewhere (model.target_weights) audited with references miakit trains."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from miakit import model_jobs, pipeline
from miakit.cli import app
from miakit.config import load_config
from miakit.errors import MiakitError
from miakit.plan import queried, trained
from miakit.store import RunDir

from .user_net import make_net

ARCH = "model.arch=python:tests.user_net:make_net"


def user_config(*extra: str):
    """The user's module on digits, with the opt-in to run it (execution.allow_code, as --set)."""
    return load_config(
        None,
        [
            ARCH,
            "execution.allow_code=true",
            "data.subsample=400",
            "split.num_models=8",
            "train.epochs=20",
            "train.lr=0.01",
            "attacks=[lira-online, lira-offline, rmia]",
            *extra,
        ],
    )


def _net_logits(weights: dict, x: np.ndarray, num_classes: int) -> np.ndarray:
    """The user's module with these weights on records x, written out: two linear layers."""
    h = np.maximum(
        x.astype(np.float64) @ weights["1.weight"].double().numpy().T
        + weights["1.bias"].double().numpy(),
        0.0,
    )
    return h @ weights["3.weight"].double().numpy().T + weights["3.bias"].double().numpy()


def test_a_users_module_trains_queries_and_is_audited(tmp_path, one_thread):
    run = RunDir(tmp_path / "run")
    metrics = pipeline.audit(user_config(), run, log=None)
    plan = pipeline.load_plan(run)
    for m in range(8):
        weights = load_file(str(run.weights(m)))
        assert set(weights) == {"1.weight", "1.bias", "3.weight", "3.bias"}
        logits = np.load(run.logits(m))
        assert logits.shape == (400, 1, 10)
        np.testing.assert_allclose(
            logits[:, 0], _net_logits(weights, plan.pool.x, 10), rtol=1e-4, atol=1e-4
        )
    for name in ("lira-online", "lira-offline", "rmia"):
        scores = np.load(run.scores(name))
        assert scores.shape == (8, 400) and np.isfinite(scores).all()
        assert metrics[name]["auc"]["mean"] is not None
    assert metrics["lira-online"]["auc"]["mean"] > 0.5


def test_editing_the_users_module_retrains(tmp_path, monkeypatch, one_thread):
    folder = tmp_path / "code"
    folder.mkdir()
    shutil.copy(sys.modules[make_net.__module__].__file__, folder / "my_net_t23.py")
    monkeypatch.syspath_prepend(str(folder))
    run = RunDir(tmp_path / "run")
    config = user_config(
        "model.arch=python:my_net_t23:make_net", "split.num_models=4", "train.epochs=1"
    )
    planned = pipeline.plan(config, run, log=None)
    pipeline.train(planned, run, log=None)
    assert all(trained(run, planned, m) for m in range(4))
    with open(folder / "my_net_t23.py", "a") as f:
        f.write("\n# an edit\n")
    again = pipeline.plan(config, run, log=None)
    assert not any(trained(run, again, m) for m in range(4))


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("python:tests.no_such_module_t23:make_net", "no module 'tests.no_such_module_t23'"),
        ("python:tests.user_net:no_factory", "has no callable 'no_factory'"),
        ("python:tests.user_net:not_a_module", "not a torch.nn.Module"),
        ("python:not a path", "unknown architecture"),
    ],
)
def test_plan_names_model_arch_for_a_bad_module(tmp_path, arch, message):
    with pytest.raises(MiakitError, match=message):
        pipeline.plan(user_config(f"model.arch={arch}"), RunDir(tmp_path / "run"), log=None)
    assert not (tmp_path / "run" / "run.yaml").exists()


def _train_elsewhere(x: np.ndarray, y: np.ndarray, members: np.ndarray) -> dict:
    """A target trained outside miakit: the user's module, the references' recipe written out
    (Adam, lr 0.01, 20 epochs of shuffled batches of 64)."""
    torch.manual_seed(5)
    net = make_net(x.shape[1:], 10)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    inputs, labels = torch.from_numpy(x[members]), torch.from_numpy(y[members])
    for _ in range(20):
        for batch in torch.randperm(len(members)).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    return {k: v.detach().contiguous() for k, v in net.state_dict().items()}


def test_a_target_checkpoint_is_audited_with_references_miakit_trains(tmp_path, one_thread):
    probe = pipeline.plan(user_config(), RunDir(tmp_path / "probe"), log=None).pool
    members = np.sort(np.random.default_rng(1).choice(400, 200, replace=False))
    weights = _train_elsewhere(probe.x, probe.y, members)
    checkpoint, member_file = tmp_path / "target.safetensors", tmp_path / "members.npy"
    save_file(weights, str(checkpoint))
    np.save(member_file, members)
    run = RunDir(tmp_path / "run")
    config = user_config(
        f"model.target_weights={checkpoint}", f"model.target_members={member_file}"
    )
    metrics = pipeline.audit(config, run, log=None)
    plan = pipeline.load_plan(run)
    assert plan.targets == (0,)
    row = np.zeros(400, dtype=bool)
    row[members] = True
    np.testing.assert_array_equal(plan.keep[0], row)
    assert run.weights(0).read_bytes() == checkpoint.read_bytes()
    assert run.read_meta(0)["trained_elsewhere"] == str(checkpoint)
    np.testing.assert_allclose(
        np.load(run.logits(0))[:, 0], _net_logits(weights, plan.pool.x, 10), rtol=1e-4, atol=1e-4
    )
    for name in ("lira-online", "lira-offline", "rmia"):
        scores = np.load(run.scores(name))
        assert scores.shape == (1, 400) and np.isfinite(scores).all()
    assert metrics["lira-online"]["auc"]["n_targets"] == 1
    assert metrics["lira-online"]["auc"]["mean"] > 0.55  # members are told apart
    # a new checkpoint: only the target is redone; the references stay
    weights["3.bias"] += 1.0
    save_file(weights, str(checkpoint))
    assert not trained(run, plan, 0) and not queried(run, plan, 0)
    assert all(trained(run, plan, m) for m in range(1, 8))
    assert model_jobs.train_models(plan, run, range(8)) == [0]
    assert run.weights(0).read_bytes() == checkpoint.read_bytes()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (["split.strategy=paired"], "split.strategy"),
        (["evaluate.targets=2"], "evaluate.targets"),
        (["model.target_members=MISSING"], "model.target_members: no file"),
        (["model.target_weights=WRONG"], "does not load into the model"),
        (["model.target_members=OUT"], r"must lie in \[0, 400\)"),
    ],
)
def test_plan_checks_the_target_checkpoint(tmp_path, setting, message):
    net = make_net((64,), 10)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "ok.st"))
    save_file({"1.weight": torch.zeros(3, 3)}, str(tmp_path / "wrong.st"))
    np.save(tmp_path / "members.npy", np.arange(0, 400, 2))
    np.save(tmp_path / "out.npy", np.array([0, 400]))
    files = {
        "MISSING": tmp_path / "none.npy",
        "WRONG": tmp_path / "wrong.st",
        "OUT": tmp_path / "out.npy",
    }
    base = [
        f"model.target_weights={tmp_path / 'ok.st'}",
        f"model.target_members={tmp_path / 'members.npy'}",
    ]
    key, value = setting[0].split("=")
    overrides = [f"{key}={files.get(value, value)}"]
    with pytest.raises(MiakitError, match=message):
        pipeline.plan(user_config(*base, *overrides), RunDir(tmp_path / "run"), log=None)


def test_models_list_shows_every_form_with_parameter_counts():
    result = CliRunner().invoke(app, ["models", "list", "--data", "digits"])
    assert result.exit_code == 0, result.output
    for form in ("mlp", "wrn28-2", "sklearn", "python:package.module:factory", "skops"):
        assert form in result.output
    mlp = 64 * 256 + 256 + 256 * 10 + 10  # the default MLP [256] on 64 features, 10 classes
    assert f"{mlp:,}" in result.output
    bad = CliRunner().invoke(app, ["models", "list", "--data", "nope"])
    assert bad.exit_code == 2 and "unknown data set" in bad.output
