"""Architectures: parameter counts against the published ones, forward shapes, option handling."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import nn

from miakit.errors import MiakitError
from miakit.models import IMAGE_MODELS, MODELS, build_model

CIFAR = (32, 32, 3)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("arch", "reference"),
    [
        ("wrn28-2", 1.47e6),  # Zagoruyko & Komodakis; the LiRA / loss-traces models
        ("wrn40-4", 8.9e6),  # Zagoruyko & Komodakis, Table 1
        ("resnet20", 0.27e6),  # He et al. 2016, Table 6
        ("resnet18", 11.2e6),  # the CIFAR ResNet-18 (3×3 stem) of the MIA literature
    ],
)
def test_parameter_counts_match_the_papers(arch: str, reference: float) -> None:
    assert count(build_model(arch, CIFAR, 10)) == pytest.approx(reference, rel=0.02)


def test_purchase_mlp_preset_has_the_literature_layer_sizes() -> None:
    model = build_model("mlp", (600,), 100, hidden=[1024, 512, 256, 128], activation="tanh")
    widths = [600, 1024, 512, 256, 128, 100]
    expected = sum(a * b + b for a, b in pairwise(widths))
    assert count(model) == expected
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 4
    assert model(torch.zeros(3, 600)).shape == (3, 100)


@pytest.mark.parametrize("arch", sorted(IMAGE_MODELS))
def test_image_models_map_nchw_batches_to_logits(arch: str) -> None:
    model = build_model(arch, CIFAR, 7).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_small_cnn_takes_small_and_grey_images() -> None:
    model = build_model("cnn", (8, 8, 1), 10)
    assert model(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_dropout_where_the_architecture_has_it() -> None:
    for arch, shape in [("mlp", (10,)), ("cnn", CIFAR), ("wrn28-2", CIFAR)]:
        model = build_model(arch, shape, 10, hidden=[8], dropout=0.3)
        assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules()), arch
    plain = build_model("mlp", (10,), 10, hidden=[8], dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_options_an_architecture_lacks_are_dropped_but_dropout_is_not() -> None:
    build_model("resnet20", CIFAR, 10, hidden=[256], activation="relu", dropout=0.0)
    with pytest.raises(MiakitError, match="no dropout"):
        build_model("resnet20", CIFAR, 10, dropout=0.5)


def test_unknown_architecture_and_features_for_an_image_model_are_errors() -> None:
    with pytest.raises(MiakitError, match="unknown architecture"):
        build_model("vgg", CIFAR, 10)
    with pytest.raises(MiakitError, match="takes images"):
        build_model("wrn28-2", (64,), 10)


def test_fast_net_stem_whitens_the_patches_of_its_training_images() -> None:
    """On the images it was set from, the stem's outputs before GELU have zero mean and identity
    covariance (up to λ / (λ + eps)), the second half negates the first; checked against numpy's
    covariance of the 2×2 patches, taken independently of the model's code."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    base = torch.rand(64, 3, 12, 12, generator=g)
    images = base + 0.5 * base.roll(1, dims=2)  # correlated neighbours and channels
    images[:, 1] += 0.3 * images[:, 0]
    model = build_model("fastnet", (12, 12, 3), 10)
    model.init_from_data(images)
    out = model.stem[0](images).permute(0, 2, 3, 1).reshape(-1, 24).double().numpy()
    np.testing.assert_allclose(out[:, 12:], -out[:, :12], atol=1e-5)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
    patches = np.stack(
        [images[:, c, dy : dy + 11, dx : dx + 11].numpy() for c in range(3) for dy in (0, 1)
         for dx in (0, 1)], axis=-1,
    ).reshape(-1, 12)  # fmt: skip
    eigenvalues = np.linalg.eigvalsh(np.cov(patches, rowvar=False, bias=True))
    expected = np.sort(eigenvalues / (eigenvalues + 5e-4))
    cov = np.cov(out[:, :12], rowvar=False, bias=True)
    np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-4)
    np.testing.assert_allclose(np.sort(np.diag(cov)), expected, rtol=1e-4)
    assert not model.stem[0].weight.requires_grad and not model.stem[0].bias.requires_grad


def test_fast_net_stem_width_follows_the_input_channels() -> None:
    model = build_model("fastnet", (28, 28, 1), 10)
    assert model.stem[0].out_channels == 8
    model.init_from_data(torch.rand(5, 1, 28, 28))
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_fast_net_convs_start_as_the_identity_and_its_batchnorms_only_shift() -> None:
    model = build_model("fastnet", (16, 16, 3), 10)
    conv = model.groups[1][0]  # 64 → 256 channels
    x = torch.randn(2, 64, 8, 8)
    torch.testing.assert_close(conv(x)[:, :64], x)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 6
    assert all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)


def test_fast_net_batchnorm_normalizes_then_shifts_and_trains_only_the_shift() -> None:
    """Forward and gradients against the formula written out in float64: (x − mean) / √(var +
    eps) + b over batch and space, with the biased variance; the frozen scale gets no gradient."""
    from miakit.models.fastnet import ShiftBatchNorm

    norm = ShiftBatchNorm(3)
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    out = norm.double()(x)
    out.pow(2).sum().backward()
    gx = x.grad.clone()
    x64 = x.detach().clone().requires_grad_(True)
    b = norm.bias.detach().clone().requires_grad_(True)
    mean = x64.mean(dim=(0, 2, 3), keepdim=True)
    var = x64.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    expected = (x64 - mean) / (var + 1e-12).sqrt() + b.view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    expected.pow(2).sum().backward()
    torch.testing.assert_close(norm.bias.grad, b.grad)
    torch.testing.assert_close(gx, x64.grad)
    assert norm.weight.grad is None and torch.equal(norm.weight, torch.ones(3, dtype=torch.float64))


def test_every_architecture_has_a_revision_the_config_reads_without_torch() -> None:
    from miakit.architectures import ARCHITECTURES, REVISIONS

    assert tuple(MODELS) == ARCHITECTURES
    assert set(REVISIONS) == set(MODELS)
