"""Models are retrained exactly when their weights could change: damaged weights are retrained,
settings the training device ignores and query-side defences are not."""

import numpy as np
import pytest
from typer.testing import CliRunner

from miakit import model_jobs, pipeline
from miakit.cli import app
from miakit.config import AuditConfig, load_config
from miakit.errors import MiakitError
from miakit.plan import train_hash
from miakit.store import RunDir, array_hash, content_hash


class CountingTrainer:
    def __init__(self):
        self.calls = 0
        self.real = model_jobs.train_model

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    config = load_config(
        None,
        [
            "split.num_models=4",
            "model.hidden=[16]",
            "train.epochs=3",
            "train.lr=0.01",
            "attacks=[loss]",
        ],
    )
    root = tmp_path_factory.mktemp("finished") / "run"
    pipeline.audit(config, RunDir(root))
    return config, root


@pytest.fixture
def counter(monkeypatch):
    counting = CountingTrainer()
    monkeypatch.setattr(model_jobs, "train_model", counting)
    return counting


def test_damaged_weights_are_retrained_by_the_next_run(run_copy, counter):
    config, run = run_copy
    good = run.weights(1).read_bytes()
    size = run.weights(2).stat().st_size
    run.weights(1).write_bytes(good[: len(good) // 2])  # truncated
    run.weights(2).write_bytes(np.random.default_rng(0).bytes(size))  # finite garbage, same size
    states = pipeline.status(run)
    assert states["stale"] == [1, 2] and states["done"] == [0, 3]

    result = CliRunner().invoke(app, ["query", str(run.root)])
    assert result.exit_code == 2
    assert "model 1" in result.output and "miakit train" in " ".join(result.output.split())

    result = CliRunner().invoke(app, ["train", str(run.root)])
    assert result.exit_code == 0, result.output
    assert "trained 2 models" in result.output and counter.calls == 2
    assert run.weights(1).read_bytes() == good  # the same training, the same weights
    pipeline.audit(config, run)
    assert counter.calls == 2 and pipeline.status(run)["done"] == [0, 1, 2, 3]


def test_weights_that_do_not_match_meta_are_refused_when_read(run_copy):
    _, run = run_copy
    planned = pipeline.load_plan(run)
    size = run.weights(0).stat().st_size
    run.weights(0).write_bytes(np.random.default_rng(1).bytes(size))
    with pytest.raises(MiakitError, match="not the file model 0 was trained to"):
        model_jobs.query_all(planned, run, planned.pool.x[:5])


def test_settings_the_cpu_ignores_retrain_nothing(run_copy, counter):
    config, run = run_copy
    assert run.read_meta(0)["device"] == "cpu"
    for setting in ("train.bf16=false", "train.channels_last=false"):
        changed = load_config(None, [*overrides(config), setting])
        pipeline.audit(changed, run)
        assert counter.calls == 0, setting


def test_temperature_scaling_requeries_without_retraining(run_copy, counter):
    config, run = run_copy
    logits = np.load(run.logits(0))
    scaled = load_config(None, [*overrides(config), "defences.temperature_scaling=true"])
    pipeline.audit(scaled, run)
    assert counter.calls == 0
    meta = run.read_meta(0)
    assert meta["calibration"]["temperature"] > 0
    temperature = meta["calibration"]["temperature"]
    np.testing.assert_allclose(np.load(run.logits(0)), logits / temperature, rtol=1e-4, atol=1e-5)
    pipeline.audit(config, run)  # and back: queried again, still not retrained
    assert counter.calls == 0 and run.read_meta(0)["calibration"] is None


def overrides(config: AuditConfig) -> list[str]:
    return [
        f"split.num_models={config.split.num_models}",
        f"model.hidden={config.model.hidden}",
        f"train.epochs={config.train.epochs}",
        f"train.lr={config.train.lr}",
        "attacks=[loss]",
    ]


def test_default_settings_keep_the_hashes_they_had():
    """The effective settings are hashed as the defaults: runs made before keep their models."""
    config = AuditConfig()
    keep_row = np.arange(10) % 2 == 0
    before = content_hash(
        {
            **config.training_inputs(),
            "pool": "fp",
            "keep_row": array_hash(keep_row),
            "model_index": 3,
        }
    )
    for device in ("cpu", "cuda"):
        assert train_hash(config.training_inputs(), "fp", keep_row, 3, device) == before
    no_bf16 = load_config(None, ["train.bf16=false"]).training_inputs()
    assert train_hash(no_bf16, "fp", keep_row, 3, "cpu") == before
    assert train_hash(no_bf16, "fp", keep_row, 3, "cuda") != before


def test_the_transfer_extractor_ignores_what_its_device_ignores():
    """Pretrained on the CPU, the extractor is the same with or without bf16 (so a CPU run keeps
    it); on CUDA, bf16 changes its weights and so its hash."""
    from miakit.defences.transfer import extractor_hash

    base = ["defences.transfer.enabled=true", "defences.transfer.pretrain_data=rest"]
    plain = load_config(None, [*base, "train.bf16=true"])
    no_bf16 = load_config(None, [*base, "train.bf16=false"])
    assert extractor_hash(plain, "cpu") == extractor_hash(no_bf16, "cpu")
    assert extractor_hash(plain, "cuda") != extractor_hash(no_bf16, "cuda")
    longer = load_config(None, [*base, "defences.transfer.pretrain_epochs=7"])
    assert extractor_hash(plain, "cpu") != extractor_hash(longer, "cpu")
