"""Transfer learning: model splits, shared features built once, heads trained on them, staleness."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import miakit.config
from miakit import model_jobs, pipeline
from miakit.architectures import TEXT_ARCHITECTURES
from miakit.config import AuditConfig, load_config
from miakit.defences import transfer
from miakit.errors import MiakitError
from miakit.features import ExtractorFeatures, PlainInputs, feature_source
from miakit.models import MODELS, build_model
from miakit.models.split import SPLITTERS, split_model
from miakit.query import identity_view, views
from miakit.seeding import derive_seed
from miakit.store import RunDir, file_lock, path_fingerprint
from miakit.train.inputs import Normalization, model_inputs
from miakit.train.trainer import train_model

DIGITS = [
    "data.subsample=600",
    "split.num_models=4",
    "model.hidden=[32]",
    "train.epochs=4",
    "train.lr=0.01",
    "defences.transfer.enabled=true",
    "defences.transfer.pretrain_epochs=2",
    "attacks=[loss, lira-offline]",
]


def digits_config(*overrides: str) -> AuditConfig:
    return load_config(None, [*DIGITS, *overrides])


def image_config(tmp_path, *overrides: str) -> AuditConfig:
    """A synthetic pool of 48 8×8 RGB images (and 12 left out, and a test split) for the CNN."""
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    x = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    y = np.arange(60) % 3
    np.savez(path, x=x, y=y, x_test=x[:12], y_test=y[:12])
    base = [
        "data.name=user",
        f"data.path={path}",
        "data.subsample=48",
        "split.num_models=4",
        "model.arch=cnn",
        "train.epochs=3",
        "train.batch_size=16",
        "defences.transfer.enabled=true",
        "attacks=[loss]",
    ]
    return load_config(None, [*base, *overrides])


def trained(config: AuditConfig, run: RunDir):
    planned = pipeline.plan(config, run)
    pipeline.train(planned, run)
    return planned


def save_weights(model: nn.Module, path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


# -- splits --------------------------------------------------------------------------------------


#: Transfer learning is a defence of classifiers; text records refuse defences (`check_text`).
CLASSIFIERS = sorted(a for a in MODELS if a not in TEXT_ARCHITECTURES)


def test_every_architecture_has_a_split():
    for arch in CLASSIFIERS:
        shape = (4, 4, 1) if arch == "mlp" else (32, 32, 3)
        assert type(build_model(arch, shape, 3, hidden=[8])) in SPLITTERS, arch


@pytest.mark.parametrize("arch", CLASSIFIERS)
@pytest.mark.parametrize("cut", ["features", "before_last_block"])
def test_frozen_then_trainable_is_the_whole_model(arch, cut):
    torch.manual_seed(0)
    shape = (6, 6, 1) if arch == "mlp" else (32, 32, 3)
    model = build_model(arch, shape, 5, hidden=[16, 8]).eval()
    x = torch.randn(3, *shape) if arch == "mlp" else torch.randn(3, 3, 32, 32)
    parts = split_model(model, cut)
    with torch.no_grad():
        torch.testing.assert_close(parts.head(parts.body(parts.frozen(x))), model(x))
        if cut == "features":
            assert parts.frozen(x).dim() == 2 and len(list(parts.body.parameters())) == 0


def test_last_block_of_an_mlp_without_hidden_layers_is_an_error():
    with pytest.raises(MiakitError, match=r"model\.hidden"):
        split_model(build_model("mlp", (4,), 2, hidden=[]), "before_last_block")


# -- config ----------------------------------------------------------------------------------------


def test_hashes_of_runs_without_transfer_are_unchanged():
    assert "transfer" not in AuditConfig().training_inputs()["defences"]
    assert "transfer" in digits_config().training_inputs()["defences"]


def test_transfer_applies_to_every_model():
    with pytest.raises(MiakitError, match="apply_to"):
        digits_config("defences.apply_to=targets")


def test_augmentation_with_transfer_is_an_error(tmp_path):
    config = image_config(tmp_path, "train.augment.flip=true")
    run = RunDir(tmp_path / "run")
    with pytest.raises(MiakitError, match=r"train\.augment\.flip"):
        trained(config, run)
    assert not run.transfer_json.exists()


def test_pretraining_on_the_rest_needs_a_subsample(tmp_path):
    with pytest.raises(MiakitError, match=r"data\.subsample"):
        trained(digits_config("data.subsample=null"), RunDir(tmp_path))


def test_pretraining_data_of_another_shape_is_an_error(tmp_path):
    config = image_config(tmp_path, "defences.transfer.pretrain_data=digits")
    with pytest.raises(MiakitError, match=r"digits has records of shape \[64\]"):
        trained(config, RunDir(tmp_path / "run"))


# -- shared features -------------------------------------------------------------------------------


def test_features_are_built_once_and_shared_by_every_model(tmp_path, monkeypatch):
    builds, extractors = [], []
    real_build, real_extractor = transfer._build, transfer._new_extractor
    monkeypatch.setattr(transfer, "_build", lambda *a: builds.append(1) or real_build(*a))
    monkeypatch.setattr(
        transfer, "_new_extractor", lambda *a: extractors.append(1) or real_extractor(*a)
    )
    run = RunDir(tmp_path)
    planned = trained(digits_config(), run)
    assert len(builds) == 1
    stamp = run.transfer_features.stat().st_mtime_ns
    hashes = {run.read_meta(m)["transfer"]["hash"] for m in range(4)}
    assert hashes == {json.loads(run.transfer_json.read_text())["hash"]}
    features = np.load(run.transfer_features)
    assert features.shape == (1, 600, 32) and features.dtype == np.float32

    run.meta(1).unlink()  # one model to redo: the features are reused, not rebuilt
    assert pipeline.train(planned, run) == [1]
    pipeline.query(planned, run)
    assert len(builds) == 1 and run.transfer_features.stat().st_mtime_ns == stamp

    other = digits_config("defences.transfer.head=mlp")  # new heads on the same extractor
    assert sorted(pipeline.train(pipeline.plan(other, run), run)) == [0, 1, 2, 3]
    assert len(builds) == 1

    # another cut: new features (here the raw records, before the MLP's only hidden layer) of
    # the same extractor, which is not pretrained again
    tuned = digits_config("defences.transfer.fine_tune=last_block")
    pipeline.train(pipeline.plan(tuned, run), run)
    assert len(builds) == 2 and len(extractors) == 1
    assert np.load(run.transfer_features).shape == (1, 600, 64)


def test_a_second_worker_waits_for_the_features(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "POLL_SECONDS", 0.05)
    run = RunDir(tmp_path)
    planned = pipeline.plan(digits_config(), run)
    got = []
    with file_lock(run.transfer_lock) as mine:  # another worker is building them
        assert mine
        waiter = threading.Thread(target=lambda: got.append(transfer.shared_features(planned, run)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive() and not got
    waiter.join(timeout=30)
    assert got and got[0].features.shape == (1, 600, 32)


def test_frozen_extractor_is_unchanged_by_training(tmp_path):
    run = RunDir(tmp_path)
    trained(digits_config("defences.transfer.fine_tune=last_block", "model.hidden=[32, 16]"), run)
    before = load_file(str(run.transfer_extractor))
    config = digits_config("defences.transfer.fine_tune=last_block", "model.hidden=[32, 16]")
    planned = pipeline.plan(config, run)
    shared = transfer.shared_features(planned, run)
    for key, value in shared.extractor.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    frozen = split_model(shared.extractor, "before_last_block").frozen
    recomputed = frozen(torch.from_numpy(planned.pool.x)).detach().numpy()
    np.testing.assert_array_equal(recomputed, np.load(run.transfer_features)[0])


def test_model_jobs_only_read_the_features_a_stage_built(tmp_path):
    run = RunDir(tmp_path)
    planned = pipeline.plan(digits_config(), run)
    with pytest.raises(MiakitError, match="miakit train"):
        model_jobs.train_models(planned, run, [0])
    assert not run.transfer_json.exists() and run.read_meta(0) is None  # nothing pretrained
    assert sorted(pipeline.train(planned, run)) == [0, 1, 2, 3]
    features = np.load(run.transfer_features)
    run.transfer_json.unlink()  # stale features: the query stage's step rebuilds them
    with pytest.raises(MiakitError, match="missing or stale"):
        model_jobs.query_models(planned, run, [0])
    assert sorted(pipeline.query(planned, run)) == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.load(run.transfer_features), features)


@pytest.mark.parametrize("transfer_on", [True, False])
def test_feature_sources_query_as_the_network_computes_by_hand(tmp_path, transfer_on):
    run = RunDir(tmp_path)
    planned = trained(digits_config(f"defences.transfer.enabled={transfer_on}"), run)
    source = feature_source(planned, run)
    assert isinstance(source, ExtractorFeatures if transfer_on else PlainInputs)
    assert (source.describe(planned) is not None) == transfer_on
    model = source.new_model(planned)
    model.load_state_dict(load_file(str(run.weights(1))))
    model.eval()
    pool = planned.pool
    norm = Normalization(pool.mean, pool.std) if pool.mean is not None else None
    x = torch.from_numpy(pool.x[:30])
    with torch.no_grad():
        inputs = model_inputs(x, norm)
        if transfer_on:
            inputs = split_model(source.shared.extractor, "features").frozen(inputs)
        expected = model(inputs).double().numpy()
    query = planned.config.query
    np.testing.assert_allclose(source.query(model, query)[:30, 0], expected, atol=1e-5)
    np.testing.assert_allclose(
        source.query_records(model, pool.x[:30], query)[:, 0], expected, atol=1e-5
    )


def test_fine_tuning_trains_only_the_last_block_and_head(tmp_path):
    run = RunDir(tmp_path)
    config = digits_config("defences.transfer.fine_tune=last_block", "model.hidden=[32, 16]")
    trained(config, run)
    weights = load_file(str(run.weights(0)))
    extractor = load_file(str(run.transfer_extractor))
    # the MLP's last hidden layer (net.3: 32 → 16), then ReLU, then a new linear head 16 → 10
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "0.weight": (16, 32),
        "0.bias": (16,),
        "2.weight": (10, 16),
        "2.bias": (10,),
    }
    assert not torch.equal(weights["0.weight"], extractor["net.3.weight"])  # it trained
    assert np.load(run.transfer_features).shape == (1, 600, 32)  # the output of net.1 + ReLU


def test_head_equals_a_head_trained_by_hand_on_the_same_features(tmp_path):
    run = RunDir(tmp_path)
    config = digits_config()
    planned = trained(config, run)
    features = torch.from_numpy(np.load(run.transfer_features)[0])
    labels = torch.from_numpy(planned.pool.y)
    for m in (0, 3):
        rows = torch.from_numpy(np.flatnonzero(planned.keep[m]))
        torch.manual_seed(derive_seed(config.seed, "init", m))
        head = nn.Linear(32, 10)
        train_model(
            head,
            features[rows],
            labels[rows],
            config.train,
            derive_seed(config.seed, "order", m),
            augment_seed=derive_seed(config.seed, "augment", m),
        )
        stored = load_file(str(run.weights(m)))
        torch.testing.assert_close(stored["0.weight"], head.weight.detach())
        torch.testing.assert_close(stored["0.bias"], head.bias.detach())


def test_stored_logits_are_the_composed_model_on_raw_images(tmp_path):
    run = RunDir(tmp_path / "run")
    config = image_config(tmp_path, "query.augmentations=2", "defences.transfer.head=mlp")
    planned = trained(config, run)
    pipeline.query(planned, run)
    info = json.loads(run.transfer_json.read_text())
    extractor = build_model("cnn", (8, 8, 3), info["extractor_classes"]).eval()
    extractor.load_state_dict(load_file(str(run.transfer_extractor)))
    head = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 3)).eval()
    head.load_state_dict(load_file(str(run.weights(2))))
    pool = planned.pool
    images = model_inputs(torch.from_numpy(pool.x), Normalization(pool.mean, pool.std))
    stored = np.load(run.logits(2))
    assert stored.shape == (48, 2, 3)
    with torch.no_grad():
        for a, view in enumerate(views(images, 2)):
            composed = head(split_model(extractor, "features").frozen(view)).numpy()
            np.testing.assert_allclose(stored[:, a], composed, rtol=1e-5, atol=1e-5)
    assert a == 1 and identity_view(2) == 0
    meta = run.read_meta(2)
    assert meta["test_accuracy"] is not None and meta["transfer"]["head"] == "mlp"
    assert np.load(run.transfer_test_features).shape == (1, 12, 128)


# -- weights files ---------------------------------------------------------------------------------


def test_weights_with_another_class_count_load_and_a_changed_file_makes_models_stale(
    tmp_path, monkeypatch
):
    weights = tmp_path / "extractor.safetensors"
    torch.manual_seed(1)
    source = build_model("mlp", (64,), 7, hidden=[32])  # 7 classes, the pool has 10
    save_weights(source, weights)
    config = digits_config(f"defences.transfer.weights={weights}", "data.subsample=null")
    run = RunDir(tmp_path / "run")
    planned = trained(config, run)
    info = json.loads(run.transfer_json.read_text())
    assert info["source"]["weights"] == str(weights) and len(info["source"]["sha256"]) == 64
    expected = split_model(source, "features").frozen(torch.from_numpy(planned.pool.x))
    np.testing.assert_allclose(np.load(run.transfer_features)[0], expected.detach().numpy())
    old_hash = planned.train_hash(0)

    torch.manual_seed(2)
    save_weights(build_model("mlp", (64,), 7, hidden=[32]), weights)  # same path, new content
    calls = []
    monkeypatch.setattr(
        model_jobs, "train_model", lambda *a, **k: calls.append(1) or train_model(*a, **k)
    )
    replanned = pipeline.plan(config, run)
    assert replanned.train_hash(0) != old_hash
    assert sorted(pipeline.train(replanned, run)) == [0, 1, 2, 3] and len(calls) == 4
    assert json.loads(run.transfer_json.read_text())["hash"] != info["hash"]


def test_mismatched_weights_file_is_a_clear_error(tmp_path):
    weights = tmp_path / "other.safetensors"
    save_weights(build_model("mlp", (64,), 10, hidden=[16]), weights)
    config = digits_config(f"defences.transfer.weights={weights}")
    with pytest.raises(
        MiakitError, match=r"other\.safetensors.*net\.1\.weight has shape \[16, 64\]"
    ):
        trained(config, RunDir(tmp_path / "run"))
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    config = digits_config(f"defences.transfer.weights={tmp_path / 'broken.safetensors'}")
    with pytest.raises(MiakitError, match="cannot read"):
        trained(config, RunDir(tmp_path / "run2"))
    with pytest.raises(MiakitError, match="does not exist"):
        digits_config(f"defences.transfer.weights={tmp_path / 'none'}").training_inputs()


# -- the audit -------------------------------------------------------------------------------------


def test_audit_on_digits_in_transfer_mode(tmp_path):
    run = RunDir(tmp_path)
    metrics = pipeline.audit(digits_config("split.num_models=8", "train.record_trace=true"), run)
    assert set(metrics) == {"loss", "lira-offline"}
    assert 0 <= metrics["loss"]["auc"]["mean"] <= 1
    meta = run.read_meta(5)
    assert meta["transfer"]["source"]["pretrained_on"] == "rest"
    assert meta["transfer"]["source"]["records"] == 1797 - 600
    assert meta["accuracy_out"] > 0.5
    assert np.load(run.trace(5)).shape == (5, 600)


def test_fine_tuned_batchnorm_blocks_train_the_same_batched_or_one_by_one(tmp_path):
    """ResNet-20's last block (BatchNorm) fine-tuned with a new head: stacked training equals
    training each model alone, running statistics included."""
    settings = [
        "model.arch=resnet20",
        "defences.transfer.fine_tune=last_block",
        "train.optimizer=sgd",  # Adam would magnify rounding on near-zero gradients
        "train.lr=0.05",
    ]
    alone, stacked = RunDir(tmp_path / "alone"), RunDir(tmp_path / "stacked")
    trained(image_config(tmp_path, *settings), alone)
    batched = ["train.batched=true", "execution.models_per_task=4"]
    trained(image_config(tmp_path, *settings, *batched), stacked)
    for m in range(4):
        one, other = load_file(str(alone.weights(m))), load_file(str(stacked.weights(m)))
        assert any("running_mean" in k for k in one) and one.keys() == other.keys()
        for key, value in one.items():
            torch.testing.assert_close(other[key], value, atol=1e-5, rtol=1e-4, msg=key)


def test_batched_and_private_heads_train_on_the_features(tmp_path):
    batched = digits_config("train.batched=true", "execution.models_per_task=4")
    trained(batched, RunDir(tmp_path / "batched"))
    private = digits_config(
        "split.num_models=2",
        "attacks=[loss]",  # two models are too few for LiRA (plan says so)
        "defences.dp.enabled=true",
        "defences.dp.noise_multiplier=1.0",
    )
    run = RunDir(tmp_path / "dp")
    trained(private, run)
    assert run.read_meta(0)["dp"]["epsilon"] > 0


def test_changing_only_the_left_out_user_records_makes_models_stale(tmp_path):
    """Pretraining on the rest of a user file: the pool's fingerprint does not cover the rest,
    the file's content does."""
    config = image_config(tmp_path)
    run = RunDir(tmp_path / "run")
    planned = trained(config, run)
    old_hash, old_extractor = planned.train_hash(0), load_file(str(run.transfer_extractor))
    path = tmp_path / "images.npz"
    with np.load(path) as saved:
        arrays = dict(saved)
    rest = np.setdiff1d(np.arange(60), pool_rows(arrays["x"], planned.pool.x))
    assert len(rest) == 12
    arrays["x"][rest] = 255 - arrays["x"][rest]
    np.savez(path, **arrays)
    replanned = pipeline.plan(config, run)
    assert replanned.fingerprint == planned.fingerprint  # the pool itself did not change
    assert replanned.train_hash(0) != old_hash
    assert sorted(pipeline.train(replanned, run)) == [0, 1, 2, 3]
    new_extractor = load_file(str(run.transfer_extractor))
    assert any(not torch.equal(new_extractor[k], v) for k, v in old_extractor.items())


def test_a_plan_reads_the_user_files_content_once_for_all_its_hashes(tmp_path, monkeypatch):
    config = image_config(tmp_path)
    planned = pipeline.plan(config, RunDir(tmp_path / "run"))
    calls = []
    monkeypatch.setattr(
        miakit.config, "path_fingerprint", lambda path: calls.append(path) or str(path)
    )
    hashes = {planned.train_hash(m) for m in range(4)} | {planned.query_hash(m) for m in range(4)}
    assert len(hashes) == 8 and len(calls) <= 1  # not once per hash


def pool_rows(all_x: np.ndarray, pool_x: np.ndarray) -> np.ndarray:
    """Indices into all_x of the records the pool holds."""
    flat = {r.tobytes(): i for i, r in enumerate(all_x)}
    return np.array([flat[r.tobytes()] for r in pool_x])


def test_path_fingerprint_of_a_folder_follows_its_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.png").write_bytes(b"one")
    first = path_fingerprint(tmp_path)
    assert path_fingerprint(tmp_path) == first
    (tmp_path / "a" / "1.png").write_bytes(b"two")
    second = path_fingerprint(tmp_path)
    (tmp_path / "a" / "1.png").write_bytes(b"three")  # other size
    assert len({first, second, path_fingerprint(tmp_path)}) == 3
    with pytest.raises(MiakitError, match="does not exist"):
        path_fingerprint(tmp_path / "missing")
