"""The small CNN learns CIFAR-10 on CPU: a subset of the JPEG copy, well above chance (10%).

About a minute on the shared 2-core development machine (measured under load): marked slow.
"""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from miakit.config import TrainConfig
from miakit.models import build_model
from miakit.query import query_logits
from miakit.train.inputs import Normalization
from miakit.train.trainer import train_model
from tests.conftest import SHARED_DATASETS

ARCHIVE = SHARED_DATASETS / "cifar10_jpeg_lossy" / "cifar10-images-jpg-q75.tar.gz"
CIFAR10_NORM = Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def decode_subset(per_class: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first `per_class[split]` images of each class of each split, as uint8 NHWC."""
    found: dict[str, dict[str, list[np.ndarray]]] = {split: {} for split in per_class}
    with tarfile.open(ARCHIVE, "r:gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[-3] not in per_class:
                continue
            split, label = parts[-3], parts[-2]
            images = found[split].setdefault(label, [])
            if len(images) < per_class[split]:
                data = archive.extractfile(member).read()
                images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    out = {}
    for split, classes in found.items():
        names = sorted(classes)
        x = np.concatenate([np.stack(classes[c]) for c in names])
        y = np.concatenate([np.full(len(classes[c]), i) for i, c in enumerate(names)])
        out[split] = (x, y)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"CIFAR-10 JPEG copy not found at {ARCHIVE}")
def test_small_cnn_trains_well_above_chance_on_cifar10_jpeg() -> None:
    splits = decode_subset({"train": 100, "test": 50})
    (x, y), (x_test, y_test) = (
        (torch.from_numpy(a), torch.from_numpy(b).long()) for a, b in splits.values()
    )
    assert x.shape == (1000, 32, 32, 3) and x.dtype == torch.uint8
    cfg = TrainConfig.model_validate(
        {
            "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
            "weight_decay": 5e-4, "epochs": 6, "batch_size": 32, "schedule": "onecycle",
            "warmup_epochs": 1, "label_smoothing": 0.1, "augment": {"flip": True},
        }
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model("cnn", (32, 32, 3), 10)
    train_model(model, x, y, cfg, order_seed=1, augment_seed=2, norm=CIFAR10_NORM)
    logits = query_logits(model, x_test, 2, norm=CIFAR10_NORM)
    accuracy = (logits.mean(1).argmax(1) == y_test.numpy()).mean()
    assert accuracy > 0.25, accuracy  # 0.32 measured
