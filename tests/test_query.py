"""Query augmentations: shapes [N, A, C], each view equal to a direct numpy construction of the
LiRA reference order, BatchNorm eval and train modes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.query import identity_view, query_logits
from miakit.train.inputs import Normalization

NORM = Normalization((0.5, 0.4, 0.3), (0.25, 0.2, 0.3))


def uint8_images(n: int = 6, h: int = 8, w: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, h, w, 3, generator=g) * 255).to(torch.uint8)


def reference_views(x: torch.Tensor, augmentations: int) -> list[np.ndarray]:
    """The reference code's loop on NHWC numpy arrays: flip, reflect-pad, crops dy-major."""
    images = (x.numpy().astype(np.float32) / 255 - np.array(NORM.mean)) / np.array(NORM.std)
    if augmentations == 1:
        return [images]
    shift = {2: 0, 18: 1, 50: 2}[augmentations]
    _, h, w, _ = images.shape
    out = []
    for aug in (images, images[:, :, ::-1, :]):
        padded = np.pad(aug, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
        for dy in range(2 * shift + 1):
            for dx in range(2 * shift + 1):
                out.append(padded[:, dy : dy + h, dx : dx + w, :])
    return out


def direct_logits(model: nn.Module, view: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(view.transpose(0, 3, 1, 2))).float())


@pytest.mark.parametrize("augmentations", [1, 2, 18, 50])
def test_each_view_equals_the_reference_construction(augmentations: int) -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (8, 9, 3), 5).eval()
    x = uint8_images()
    logits = query_logits(model, x, augmentations, norm=NORM)
    assert logits.shape == (6, augmentations, 5) and logits.dtype == np.float32
    for a, view in enumerate(reference_views(x, augmentations)):
        np.testing.assert_allclose(logits[:, a], direct_logits(model, view), rtol=1e-4, atol=1e-5)
    plain = direct_logits(model, reference_views(x, 1)[0])
    np.testing.assert_allclose(logits[:, identity_view(augmentations)], plain, rtol=1e-4, atol=1e-5)


def test_batchnorm_train_mode_uses_batch_statistics_and_leaves_running_stats() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", (8, 9, 3), 4).eval()
    for module in model.modules():  # make running statistics differ from batch statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.fill_(0.3)
            module.running_var.fill_(2.0)
    before = copy.deepcopy(model.state_dict())
    x = uint8_images(10)
    eval_logits = query_logits(model, x, 2, norm=NORM)
    train_logits = query_logits(model, x, 2, norm=NORM, batchnorm="train")
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not model.training
    reference = copy.deepcopy(model).train()
    for a, view in enumerate(reference_views(x, 2)):
        np.testing.assert_allclose(
            train_logits[:, a], direct_logits(reference, view), rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            eval_logits[:, a], direct_logits(model, view), rtol=1e-4, atol=1e-5
        )
    assert not np.allclose(train_logits, eval_logits)


def test_features_have_one_view_only() -> None:
    model = nn.Linear(4, 3)
    assert query_logits(model, torch.zeros(5, 4)).shape == (5, 1, 3)
    with pytest.raises(MiakitError, match="needs images"):
        query_logits(model, torch.zeros(5, 4), 18)
