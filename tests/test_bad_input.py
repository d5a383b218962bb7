"""Bad input stops `miakit audit` (and the other stages) with one clear `error:` line before
anything is written or trained: each case asserts the message and an untouched run directory."""

import errno
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from miakit import pipeline
from miakit.cli import app
from miakit.config import load_config
from miakit.store import RunDir

TINY = [
    "--set", "split.num_models=4", "--set", "model.hidden=[8]", "--set", "train.epochs=1",
    "--set", "attacks=[loss]",
]  # fmt: skip


def run_cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split()), result


def write_npz(path, records, features=5, classes=2, **extra):
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.random((records, features)).astype(np.float32),
        "y": np.arange(records) % classes,
    }
    np.savez(path, **(arrays | extra))
    return path


BAD_SETTINGS = {
    "unknown attack": (["attacks=[loss, lira]"], "unknown attack 'lira'"),
    "unknown attack option": (
        ["attack_options={lira-online: {centre: mean}}"],
        "attack_options.lira-online.centre: unknown key",
    ),
    "bad attack option value": (
        ["attack_options={lira-online: {center: mode}}"],
        "attack_options.lira-online.center",
    ),
    "options of an unknown attack": (
        ["attack_options={lira: {center: mean}}"],
        "attack_options.lira: unknown attack",
    ),
    "unknown architecture": (["model.arch=resnet99"], "unknown architecture 'resnet99'"),
    "image model on features": (["model.arch=cnn"], "cnn takes images"),
    "query views on features": (["query.augmentations=2"], "feature vectors"),
    "too few models for online LiRA": (
        ["split.num_models=2", "attacks=[lira-online]"],
        "lira-online needs an IN reference model for every record",
    ),
    "too few models for offline attacks": (
        ["split.num_models=2", "attacks=[attack-r, rmia-offline]"],
        "attack-r, rmia-offline need an OUT reference model",
    ),
    "lt-iqr without traces": (["attacks=[lt-iqr]"], "lt-iqr needs loss traces"),
    "salem top_k above the classes": (
        ["attacks=[salem]", "attack_options={salem: {top_k: 11}}"],
        "attack_options.salem.top_k: top_k = 11 exceeds the 10 classes",
    ),
    "threshold shadow beyond the references": (
        ["attacks=[threshold-entropy]", "attack_options={threshold-entropy: {shadow: 3}}"],
        "attack_options.threshold-entropy.shadow: 3 picks a reference model (counting from 0), "
        "but there are only 3",
    ),
    "auto offline_a with one reference": (
        [
            "split.num_models=2",
            "attacks=[rmia-offline]",
            "attack_options={rmia-offline: {offline_a: auto}}",
        ],
        "attack_options.rmia-offline.offline_a: auto attacks a paired reference model with the "
        "other references, so it needs at least two reference models, but there are 1",
    ),
    "lt-iqr window beyond the trace": (
        [
            "train.record_trace=true",
            "train.epochs=3",
            "train.trace_every=2",
            "attacks=[lt-iqr]",
            "attack_options={lt-iqr: {epochs: [0, 4]}}",
        ],
        "attack_options.lt-iqr.epochs: [0, 4] reaches past the 3 recorded points of the loss trace",
    ),
    "odd number of models": (["split.num_models=7"], "even number of models"),
    "more targets than models": (["evaluate.targets=9"], "evaluate.targets: 9 targets"),
    "unknown key": (["train.lrr=1"], "train.lrr: unknown key"),
    "bad value": (["train.lr=-1"], "train.lr: Input should be greater than 0"),
    "unknown strategy": (["split.strategy=random"], "split.strategy"),
    "bad FPR": (["evaluate.fprs=[2]"], "fprs must be a non-empty list"),
    "two calibrations": (
        ["defences.temperature_scaling=true", "defences.laplace.enabled=true"],
        "choose one calibration",
    ),
    "unknown data set": (["data.name=mnist2"], "mnist2"),
    "missing user file": (["data.name=user", "data.path=/nonexistent/x.npz"], "/nonexistent/x.npz"),
    "CUDA asked for, none here": (["train.device=cuda"], "no CUDA device is available"),
    "subsample larger than the pool": (["data.subsample=5000"], "subsample"),
    "not YAML": (["model.hidden=[1,"], "is not valid YAML"),
    "no equals sign": (["train.epochs"], "--set expects KEY.PATH=VALUE"),
    "not a section": (["train.epochs=3", "train.epochs.x=1"], "train.epochs is not a section"),
    "batched with dropout": (
        ["train.batched=true", "model.dropout=0.5"],
        "model.dropout is not supported by train.batched",
    ),
    "DP-SGD with lookahead": (
        ["defences.dp.enabled=true", "defences.dp.noise_multiplier=1", "train.lookahead=true"],
        "train.lookahead is not supported by DP-SGD (defences.dp)",
    ),
    "training augmentation of feature rows": (
        ["train.augment.crop_padding=2"],
        "train.augment works on images, but digits's records are feature vectors",
    ),
    "dropout on an architecture without": (
        ["data.name=user", "model.arch=resnet20", "model.dropout=0.5"],
        "resnet20 has no dropout",
    ),
}


def test_three_record_data_set_stops_before_writing(tmp_path):
    data = write_npz(tmp_path / "three.npz", 3)
    out = tmp_path / "run"
    code, output, _ = run_cli(
        "audit", "--out", out, *TINY, "--set", "data.name=user", "--set", f"data.path={data}"
    )
    assert code == 2 and "a ROC needs members and non-members" in output, output
    assert not out.exists()


def test_config_file_problems(tmp_path):
    out = tmp_path / "run"
    code, output, _ = run_cli("audit", "--config", tmp_path / "none.yaml", "--out", out)
    assert code == 2 and "none.yaml does not exist" in output
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    code, output, _ = run_cli("audit", "--config", listed, "--out", out)
    assert code == 2 and "must hold a mapping" in output
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {epochs: [\n")
    code, output, _ = run_cli("audit", "--config", broken, "--out", out)
    assert code == 2 and "is not valid YAML" in output
    assert not out.exists()


def test_out_naming_a_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    code, output, _ = run_cli("audit", "--out", target, *TINY)
    assert code == 2 and f"{target} exists and is not a directory" in output, output
    assert target.read_text() == "mine"
    code, output, _ = run_cli("audit", "--out", target / "run", *TINY)
    assert code == 2 and f"{target} is not a directory" in output, output


def test_paths_are_printed_literally(tmp_path):
    """Rich markup and emoji codes in a user's path are not interpreted."""
    odd = tmp_path / "a:x:[bold]b"
    odd.write_text("")
    code, output, _ = run_cli("audit", "--out", odd, *TINY)
    assert code == 2 and f"{odd} exists and is not a directory" in output, output


def test_read_only_and_full_disks_give_one_error_line(tmp_path, monkeypatch, tiny_config):
    """OSError 30 and 28 while writing: one `error:` line naming the file, nothing half-written."""
    import miakit.store as store

    def no_space(self, data, *args, **kwargs):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", no_space)
    out = tmp_path / "run"
    code, output, result = run_cli("audit", "--out", out, *TINY)
    assert code == 2, result.output
    assert output == f"error: {out / 'run.yaml'}: No space left on device (errno 28)"
    assert not [p for p in out.rglob("*") if p.is_file()]

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.undo()
    monkeypatch.setattr(store.tempfile, "mkstemp", read_only)
    code, output, _ = run_cli("audit", "--out", tmp_path / "other", *TINY)
    assert (
        code == 2 and output.startswith("error: ") and "Read-only file system (errno 30)" in output
    )


def test_full_disk_while_writing_the_report_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert run_cli("audit", "--out", out, *TINY)[0] == 0
    report = (out / "report.html").read_bytes()
    (out / "report.json").unlink()  # the report is to be written again
    written = []

    def fills_up(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        written.append(self)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_text", fills_up)
    code, output, _ = run_cli("report", out)
    assert (
        code == 2 and output == f"error: {out / 'report.html'}: No space left on device (errno 28)"
    )
    assert (out / "report.html").read_bytes() == report
    assert written and not any(p.exists() for p in written)


def test_bad_execution_options_are_rejected_before_training(tmp_path):
    run = RunDir(tmp_path / "run")
    pipeline.plan(load_config(None, TINY[1::2]), run)
    for args, message in [
        (["--executor", "processes", "--workers", "0"], "workers: Input should be greater than"),
        (["--executor", "slurm"], "executor"),
        (["--shard", "3/2"], "--shard 3/2"),
        (["--shard", "x"], "--shard expects i/n"),
    ]:
        code, output, _ = run_cli("train", run.root, *args)
        assert code == 2 and message in output, (args, output)
        assert not (run.root / "models").exists()


def test_plan_rewrites_nothing_when_a_check_fails(tmp_path, tiny_config):
    """An unknown architecture given to a planned run leaves run.yaml as it was."""
    run = RunDir(tmp_path / "run")
    pipeline.plan(tiny_config, run)
    before = {p.name: p.read_bytes() for p in run.root.iterdir()}
    code, output, _ = run_cli("audit", "--out", run.root, "--set", "model.arch=resnet99")
    assert code == 2 and "resnet99" in output
    assert {p.name: p.read_bytes() for p in run.root.iterdir()} == before
    assert pipeline.status(run)["missing"] == list(range(8))


OPT_IN = ["execution.allow_code=true"]
#: Issue 30's bad inputs: each stops `miakit audit` at plan, before anything is written.
MORE_BAD_SETTINGS = {
    "threads beyond the machine": (["execution.threads=100000"], "execution.threads: "),
    "an attack twice": (["attacks=[loss, loss]"], "'loss' is given twice"),
    "an FPR twice": (["evaluate.fprs=[0.01, 0.01]"], "0.01 is given twice"),
    "models beyond memory": (
        ["split.num_models=100000000"],
        "split.num_models: 100,000,000 models × 1,797 records need about",
    ),
    "a model beyond memory": (
        ["model.hidden=[100000000]"],
        "model.arch mlp with model.hidden=[100000000]: 7,500,000,010 parameters need about",
    ),
    "DP audit of an unknown attack": (
        ["dp_audit.attacks=[bogus]"],
        "dp_audit.attacks: bogus not among the run's attacks",
    ),
    "DP audit of an attack not run": (
        ["dp_audit.attacks=[lira-online]"],
        "dp_audit.attacks: lira-online not among the run's attacks (loss)",
    ),
    "an OOD set of an unknown data set": (
        ["evaluate.ood=[{kind: dataset, source: nope}]"],
        "evaluate.ood.0.source: unknown data set 'nope'",
    ),
    "canaries filling the pool": (
        ["dp_audit.canaries.count=1797"],
        "dp_audit.canaries.count: 1,797 canaries of 1,797 pool records leave 0 ordinary records",
    ),
    "a factory that raises": (
        ["model.arch=python:tests.user_net:raising_net", *OPT_IN],
        "model.arch: python:tests.user_net:raising_net raised ValueError when called with "
        "input_shape (64,) and num_classes 10: width must be even",
    ),
    "a module with the wrong classes": (
        ["model.arch=python:tests.user_net:wrong_classes_net", *OPT_IN],
        "maps a batch of records of shape [2, 64] to [2, 13]; training needs logits of shape "
        "[2, 10]",
    ),
    "a module of another input size": (
        ["model.arch=python:tests.user_net:wrong_input_net", *OPT_IN],
        "python:tests.user_net:wrong_input_net fails on a batch of records of shape [2, 64]: "
        "RuntimeError",
    ),
    "a module with 3-D output": (
        ["model.arch=python:tests.user_net:three_d_net", *OPT_IN],
        "maps a batch of records of shape [2, 64] to [2, 1, 10]",
    ),
    "a module without parameters": (
        ["model.arch=python:tests.user_net:parameterless_net", *OPT_IN],
        "python:tests.user_net:parameterless_net has no trainable parameters",
    ),
}


@pytest.mark.parametrize("kind", [*BAD_SETTINGS, *MORE_BAD_SETTINGS])
def test_bad_setting_stops_audit_before_writing(kind, tmp_path):
    settings, message = {**BAD_SETTINGS, **MORE_BAD_SETTINGS}[kind]
    if "data.name=user" in settings and not any(s.startswith("data.path") for s in settings):
        images = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 1), dtype=np.uint8)
        np.savez(tmp_path / "img.npz", x=images, y=np.arange(40) % 2)
        settings = [*settings, f"data.path={tmp_path / 'img.npz'}"]
    out = tmp_path / "run"
    code, output, result = run_cli(
        "audit", "--out", out, *TINY, *(a for s in settings for a in ("--set", s))
    )
    assert code == 2, result.output
    assert output.startswith("error:") and message in output, output
    assert "Traceback" not in output
    assert not out.exists()


BAD_NPZ = {
    "string labels": (
        {"y": np.array(["a", "b"] * 50)},
        "y: labels must be integer class indices from 0, got <U1",
    ),
    "one class": ({"y": np.zeros(100, int)}, "every record has label 0; no membership signal"),
    "labels far beyond the records": (
        {"y": np.arange(100) * 1000 + 999},
        "y: 100,000 classes for 100 records (labels up to 99,999)",
    ),
    "test classes absent from the pool": (
        {
            "y": np.arange(100) % 2,
            "x_test": np.zeros((10, 5), np.float32),
            "y_test": np.full(10, 2),
        },
        "y_test: classes [2] have test records but no pool record",
    ),
}


@pytest.mark.parametrize("kind", BAD_NPZ)
def test_bad_user_labels_stop_audit_before_writing(kind, tmp_path):
    extra, message = BAD_NPZ[kind]
    data = write_npz(tmp_path / "d.npz", 100, **extra)
    out = tmp_path / "run"
    code, output, result = run_cli(
        "audit", "--out", out, *TINY, "--set", "data.name=user", "--set", f"data.path={data}"
    )
    assert code == 2, result.output
    assert output.startswith("error:") and message in output, output
    assert not out.exists()


def test_an_image_folder_of_one_class_stops_audit(tmp_path):
    from PIL import Image

    folder = tmp_path / "images" / "cats"
    folder.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((4, 4, 3), i * 40, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    code, output, _ = run_cli(
        "audit", "--out", out, *TINY, "--set", "data.name=user",
        "--set", f"data.path={tmp_path / 'images'}",
    )  # fmt: skip
    assert code == 2 and "every record has label 0; no membership signal" in output, output
    assert not out.exists()


def billion_laughs(levels=9):
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for previous, name in zip("abcdefghij", "bcdefghij"[: levels - 1], strict=False):
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    return text


CONFIG_FILES = {
    "random bytes": (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
                     "is not UTF-8 text (byte"),
    "billion laughs": (billion_laughs().encode(), "expands to more than 100,000 values"),
    "a key twice": (b"train: {epochs: 1}\ntrain: {epochs: 2}\n", "train is given twice (line 2)"),
    "a nested key twice": (b"train:\n  epochs: 1\n  epochs: 2\n", "train.epochs is given twice"),
    "a self-referencing anchor": (b"a: &x [*x]\n", "nests deeper than 64 levels"),
}  # fmt: skip


@pytest.mark.parametrize("kind", CONFIG_FILES)
def test_hostile_config_files_are_refused_at_once(kind, tmp_path):
    import time

    text, message = CONFIG_FILES[kind]
    config = tmp_path / "config.yaml"
    config.write_bytes(text)
    out = tmp_path / "run"
    start = time.perf_counter()
    code, output, result = run_cli("audit", "--config", config, "--out", out)
    assert time.perf_counter() - start < 1.0
    assert code == 2, result.output
    assert output.startswith("error:") and f"config file {config}" in output
    assert message in output, output
    assert not out.exists()


def test_yaml_merge_keys_and_repeated_aliases_still_load(tmp_path):
    """The refusals leave ordinary YAML alone: a merge key is no duplicate, and a value used by
    a few aliases is read as YAML reads it."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "base: &base {epochs: 2, lr: 0.05}\n"
        "train:\n  <<: *base\n  epochs: 3\n"
        "evaluate: {fprs: &f [0.1, 0.01]}\n"
    )
    raw = pytest.importorskip("miakit.config.yaml_text").read_yaml(config.read_bytes(), "x")
    assert raw["train"] == {"epochs": 3, "lr": 0.05}
    assert raw["evaluate"]["fprs"] == [0.1, 0.01]


def test_integer_tensors_in_a_target_checkpoint_are_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    from miakit.models import build_model

    net = build_model("mlp", (64,), 10, hidden=[8])
    state = {
        k: v.to(torch.int64) if k.endswith("weight") else v for k, v in net.state_dict().items()
    }
    weights = tmp_path / "target.safetensors"
    save_file(state, str(weights))
    members = tmp_path / "members.npy"
    np.save(members, np.arange(1797) % 2 == 0)
    out = tmp_path / "run"
    code, output, _ = run_cli(
        "audit", "--out", out, *TINY, "--set", f"model.target_weights={weights}",
        "--set", f"model.target_members={members}",
    )  # fmt: skip
    assert code == 2, output
    assert re.search(
        r"tensor [\w.]+weight is torch.int64, but the model mlp holds torch.float32", output
    )
    assert not out.exists()
