"""Hugging Face image classifiers (model.arch hf:FOLDER, model.task image-classification): the
folder's checks, the pool as the image processor gives it, the stored logits against plain
transformers on pixel values prepared here with PIL from the preprocessor's numbers, an audit,
plan's refusals and LoRA. A tiny ViT is made locally (`examples/tiny_hf_model.py`); the images
are scikit-learn's digits stored as 8×8 grey uint8 images; nothing is downloaded."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the text extra (miakit[text]) is not installed")

import torch
from PIL import Image

from miakit import hf, pipeline
from miakit.config import load_config
from miakit.data.canaries import insert_canaries
from miakit.data.registry import load_pool
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.plan import configured_canaries, load_configured_pool
from miakit.seeding import rng
from miakit.store import RunDir, load_npy
from miakit.train.inputs import Normalization
from miakit.train.trainer import train_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import tiny_hf_model  # noqa: E402

sys.path.pop(0)

#: distinct per channel, and a rescale factor of 2/255, so that every number of the mapping counts
PROCESSOR = {
    **tiny_hf_model.IMAGE_PROCESSOR,
    "rescale_factor": 2 / 255,
    "image_mean": [0.9, 1.0, 1.1],
    "image_std": [0.4, 0.5, 0.6],
}
ATTACKS = "attacks=[loss, lira-online, lira-offline, rmia]"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(ViT folder: 3 channels at 16×16, digits .npz: 120 grey 8×8 images)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("hf-image")
    tiny_hf_model.write_image_model(root / "tiny-vit", PROCESSOR)
    digits = load_digits()
    images = np.rint(digits.data[:120] / 16 * 255).astype(np.uint8).reshape(-1, 8, 8, 1)
    np.savez(root / "digits.npz", x=images, y=digits.target[:120])
    return root / "tiny-vit", root / "digits.npz"


def _config(folder: Path, data: Path, *overrides: str):
    return load_config(
        None,
        [
            f"model.arch=hf:{folder}",
            "model.task=image-classification",
            "data.name=user",
            f"data.path={data}",
            "split.num_models=4",
            "train.epochs=2",
            "train.optimizer=adam",
            "train.batch_size=32",
            "execution.threads=1",
            "evaluate.targets=null",
            ATTACKS,
            *overrides,
        ],
    )


def _plan_error(tmp_path, config) -> str:
    with pytest.raises(MiakitError) as caught:
        pipeline.plan(config, RunDir(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.yaml").exists()
    return str(caught.value)


def _pixel_values(images: np.ndarray, processor: dict) -> torch.Tensor:
    """uint8 grey images [N, H, W, 1] as ViTImageProcessor's steps make them, written out: to
    RGB, resized by PIL (bilinear, on float pixels), rescaled, normalized; float32 [N, 3, h, w]."""
    size = (processor["size"]["width"], processor["size"]["height"])
    out = []
    for image in images.astype(np.float32):
        rgb = np.repeat(image, 3, axis=-1)
        resized = [
            np.asarray(Image.fromarray(rgb[..., c], mode="F").resize(size, Image.BILINEAR))
            for c in range(3)
        ]
        pixels = np.stack(resized).astype(np.float64) * processor["rescale_factor"]
        mean = np.array(processor["image_mean"])[:, None, None]
        std = np.array(processor["image_std"])[:, None, None]
        out.append((pixels - mean) / std)
    return torch.from_numpy(np.stack(out)).float()


@pytest.fixture(scope="module")
def audit(tiny, tmp_path_factory):
    """A planned, trained, queried and attacked run of 4 ViTs, 2 epochs, with the flip view."""
    folder, data = tiny
    run = RunDir(tmp_path_factory.mktemp("hf-image-run") / "run")
    config = _config(folder, data, "query.augmentations=2")
    planned = pipeline.plan(config, run, log=None)
    pipeline.train(planned, run)
    pipeline.query(planned, run)
    pipeline.attack(run, planned.config)
    return run, planned


def test_the_pool_takes_the_processors_channels_and_normalization(tiny):
    folder, data = tiny
    pool = load_configured_pool(_config(folder, data))
    raw = np.load(data)["x"]
    assert pool.is_image and pool.x.shape == (120, 8, 8, 3)
    assert (pool.x == raw).all()  # the grey channel, three times
    # the processor's (2/255 · 255 p − m) / s as (p − mean) / std on the 0..1 scale
    p = np.linspace(0, 1, 11)[:, None]
    expected = (2 * p - np.array(PROCESSOR["image_mean"])) / np.array(PROCESSOR["image_std"])
    np.testing.assert_allclose((p - np.array(pool.mean)) / np.array(pool.std), expected)


def test_stored_logits_are_plain_transformers_on_the_processors_pixel_values(tiny, audit):
    from safetensors.torch import load_file
    from transformers import ViTForImageClassification

    folder, data = tiny
    run, _ = audit
    images = np.load(data)["x"]
    views = [_pixel_values(images, PROCESSOR), _pixel_values(images[:, :, ::-1], PROCESSOR)]
    reference = ViTForImageClassification.from_pretrained(folder, num_labels=10).eval()
    for m in range(4):
        state = load_file(run.weights(m))
        reference.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
        logits = load_npy(run.logits(m))
        assert logits.shape == (120, 2, 10)
        for view, pixels in enumerate(views):
            with torch.no_grad():
                expected = reference(pixel_values=pixels).logits
            np.testing.assert_allclose(logits[:, view], expected.numpy(), atol=2e-5)


def test_an_image_audit_scores_every_record_and_fine_tunes_the_head(audit):
    from safetensors.torch import load_file

    run, _ = audit
    for name in ("loss", "lira-online", "lira-offline", "rmia"):
        scores = load_npy(run.scores(name))
        assert scores.shape == (4, 120) and np.isfinite(scores).all()
    heads = [load_file(run.weights(m))["model.classifier.weight"] for m in range(4)]
    assert heads[0].shape == (10, 32) and not torch.equal(heads[0], heads[1])
    assert pipeline.trained_models(run) == (4, 4)


def test_a_folder_without_tokenizer_serves_images_only_and_its_preprocessor_is_hashed(
    tiny, tmp_path
):
    folder, data = tiny
    arch = f"hf:{folder}"
    assert not (folder / "tokenizer.json").exists()
    assert hf.model_folder(arch, "image-classification") == folder
    for task in ("sequence-classification", "causal-lm"):
        with pytest.raises(MiakitError, match=r"has no tokenizer\.json"):
            hf.model_folder(arch, task)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    config = _config(copy, data)
    assert "preprocessor_config.json" in config.training_inputs()["model"]["base"]
    before, fingerprint = config.training_inputs(), load_configured_pool(config).fingerprint()
    processor = {**PROCESSOR, "image_std": [0.4, 0.5, 0.7]}
    (copy / "preprocessor_config.json").write_text(json.dumps(processor))
    assert config.training_inputs() != before  # another processor: every model retrains
    assert load_configured_pool(config).fingerprint() != fingerprint


def test_without_a_preprocessor_the_model_config_and_the_pools_constants_serve(tiny, tmp_path):
    folder, data = tiny
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    (bare / "preprocessor_config.json").unlink()
    inputs = hf.image_inputs(bare, "hf:bare")
    assert (inputs.channels, inputs.size, inputs.mean) == (3, (16, 16), None)
    pool = load_configured_pool(_config(bare, data))
    assert pool.x.shape[-1] == 3 and pool.mean == (0.5,) * 3 and pool.std == (0.5,) * 3


@pytest.mark.parametrize(
    ("processor", "size", "mean", "std"),
    [
        (
            {"size": {"shortest_edge": 24}, "image_mean": 0.5, "image_std": 0.25},
            (24, 24),
            0.5,
            0.25,
        ),
        (
            {"size": 32, "do_center_crop": True, "crop_size": {"height": 20, "width": 28}},
            (20, 28),
            0.5,
            0.5,
        ),
        ({"do_normalize": False}, (16, 16), 0.0, 1.0),
        ({"do_rescale": False, "image_mean": 127.5, "image_std": 51.0}, (16, 16), 0.5, 0.2),
    ],
)
def test_the_processors_settings_are_read_as_transformers_writes_them(
    tiny, tmp_path, processor, size, mean, std
):
    folder, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    settings = {**tiny_hf_model.IMAGE_PROCESSOR, **processor}
    (copy / "preprocessor_config.json").write_text(json.dumps(settings))
    inputs = hf.image_inputs(copy, "hf:copy")
    assert inputs.size == size and inputs.resample == "bilinear"
    np.testing.assert_allclose(inputs.mean, [mean] * 3)
    np.testing.assert_allclose(inputs.std, [std] * 3)


@pytest.mark.parametrize(
    ("processor", "message"),
    [
        ({"size": {"longest_edge": 24}}, "gives an image size miakit cannot read"),
        ({"image_mean": [0.5, 0.5]}, "image_mean must give 3 numbers"),
        ({"image_std": [0.5, 0.0, 0.5]}, "image_std must be > 0"),
        ({"rescale_factor": "1/255"}, "rescale_factor must be a number > 0"),
    ],
)
def test_plan_refuses_processor_settings_it_cannot_follow(tiny, tmp_path, processor, message):
    folder, data = tiny
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    settings = {**tiny_hf_model.IMAGE_PROCESSOR, **processor}
    (copy / "preprocessor_config.json").write_text(json.dumps(settings))
    error = _plan_error(tmp_path, _config(copy, data))
    assert error.startswith(f"model.arch: hf:{copy}: preprocessor_config.json") and message in error


def test_plan_refuses_records_that_are_no_images_and_channels_that_do_not_map(tiny, tmp_path):
    folder, data = tiny
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": f"record {i}", "label": i % 2}) + "\n" for i in range(20))
    )
    message = _plan_error(tmp_path, _config(folder, corpus))
    assert message == (
        "model.task: image-classification takes images [H, W, C]; user:c.jsonl's records are "
        "text records"
    )
    digits = _config(folder, data, "data.name=digits", "data.path=null")
    assert _plan_error(tmp_path, digits).endswith("digits's records are feature vectors")
    colour = tmp_path / "colour.npz"
    x = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    np.savez(colour, x=x, y=np.arange(20) % 2)
    grey_model = tmp_path / "grey-vit"
    tiny_hf_model.write_image_model(
        grey_model, {**PROCESSOR, "image_mean": 0.5, "image_std": 0.5}, channels=1
    )
    message = _plan_error(tmp_path, _config(grey_model, colour))
    assert message == (
        f"model.arch: hf:{grey_model} takes 1-channel images (config.json num_channels); "
        "user:colour.npz's have 3"
    )
    grey = load_configured_pool(_config(grey_model, data))
    assert grey.x.shape[-1] == 1 and grey.mean == (0.5 / (255 * 2 / 255),)


@pytest.mark.parametrize("task", ["sequence-classification", "causal-lm"])
def test_plan_refuses_a_text_task_on_images(tiny, tmp_path, task):
    folder, data = tiny
    message = _plan_error(tmp_path, _config(folder, data, f"model.task={task}"))
    assert message == (
        f"data.path: {data} is no .txt, .jsonl, .csv file or saved datasets.Dataset folder of "
        f"text records, which model.task {task} takes; images take model.task "
        "image-classification"
    )


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        (["train.batched=true"], "train.batched"),
        (["defences.dp.enabled=true", "defences.dp.noise_multiplier=1"], "defences.dp"),
        (["defences.transfer.enabled=true"], "defences.transfer"),
    ],
)
def test_plan_refuses_trainers_that_do_not_take_transformers_models(tiny, tmp_path, settings, name):
    folder, data = tiny
    message = _plan_error(tmp_path, _config(folder, data, *settings))
    assert message == f"{name}: not supported with an hf arch yet; leave it at its default"


def test_canaries_are_planted_in_the_images_before_they_take_the_models_channels(tiny):
    folder, data = tiny
    config = _config(folder, data, "dp_audit.canaries.count=10", "dp_audit.canaries.kind=noise")
    pool = load_configured_pool(config)
    plain = load_pool("user", path=data)
    records = configured_canaries(config, plain.num_records)
    planted = insert_canaries(plain, records, "noise", rng(config.seed, "canary-content"))
    assert (pool.y == planted.y).all() and (pool.y[records] != plain.y[records]).any()
    assert (pool.x == planted.x).all()  # noise canaries stay grey: the channel repeated
    assert not (pool.x[records] == plain.x[records]).all()


def test_lora_trains_the_adapters_and_the_head_and_nothing_else(tiny):
    folder, data = tiny
    lora = "model.lora={r: 2, alpha: 4, target_modules: [q_proj, v_proj]}"
    config = _config(folder, data, lora, "train.epochs=1")
    pool = load_configured_pool(config)
    torch.manual_seed(0)
    net = build_model(
        config.model.arch, pool.x.shape[1:], 10, **config.model.model_dump(exclude={"arch"})
    )
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert any("q_proj.lora_A" in n for n in trainable) and any(
        "v_proj.lora_B" in n for n in trainable
    )
    assert all("lora_" in n or "classifier.modules_to_save" in n for n in trainable)
    assert "model.base_model.model.classifier.modules_to_save.default.weight" in trainable
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    x, y = torch.from_numpy(pool.x), torch.from_numpy(pool.y)
    train_model(net, x, y, config.train, 0, norm=Normalization(pool.mean, pool.std))
    after = dict(net.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == trainable  # the head and every adapter moved, no frozen weight did
    with pytest.raises(MiakitError, match=r"^model.lora: "):
        build_model(
            config.model.arch,
            pool.x.shape[1:],
            10,
            task="image-classification",
            lora={"r": 2, "alpha": 4, "target_modules": ["query"]},
        )


@pytest.mark.parametrize("resample", [0, 2, 3])
@pytest.mark.parametrize("side", [8, 24])
def test_the_model_resizes_as_pil_does_with_the_processors_filter(tiny, tmp_path, resample, side):
    from transformers import ViTForImageClassification

    folder, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "preprocessor_config.json").write_text(json.dumps({**PROCESSOR, "resample": resample}))
    torch.manual_seed(0)
    net = build_model(f"hf:{copy}", (side, side, 3), 10, task="image-classification").eval()
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(1))
    resized = [
        [
            np.asarray(Image.fromarray(channel.numpy(), mode="F").resize((16, 16), resample))
            for channel in image
        ]
        for image in x
    ]
    reference = ViTForImageClassification.from_pretrained(copy, num_labels=10).eval()
    reference.load_state_dict({k.removeprefix("model."): v for k, v in net.state_dict().items()})
    with torch.no_grad():
        expected = reference(pixel_values=torch.from_numpy(np.array(resized))).logits
        np.testing.assert_allclose(net(x).numpy(), expected.numpy(), atol=2e-5)


def test_a_head_of_another_class_count_is_drawn_anew_from_the_models_seed(tiny, tmp_path):
    from safetensors.torch import load_file
    from transformers import ViTConfig, ViTForImageClassification

    folder, _ = tiny
    full = tmp_path / "full"
    config = ViTConfig.from_pretrained(folder, num_labels=5)
    ViTForImageClassification(config).save_pretrained(full, safe_serialization=True)
    shutil.copy(folder / "preprocessor_config.json", full)
    nets = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        nets.append(build_model(f"hf:{full}", (8, 8, 3), 10, task="image-classification"))
    a, b, c = (net.state_dict()["model.classifier.weight"] for net in nets)
    assert a.shape == (10, 32) and torch.equal(a, b) and not torch.equal(a, c)
    stored = load_file(full / "model.safetensors")
    body = "vit.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(nets[2].state_dict()[f"model.{body}"], stored[body])
