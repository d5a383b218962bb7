"""Bad input stops `miakit audit` (and the other stages) with one clear `error:` line before
anything is written or trained: each case asserts the message and an untouched run directory."""

import errno

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


@pytest.mark.parametrize("kind", BAD_SETTINGS)
def test_bad_setting_stops_audit_before_writing(kind, tmp_path):
    settings, message = BAD_SETTINGS[kind]
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
