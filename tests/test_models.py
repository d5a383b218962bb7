"""Architectures: parameter counts against the published ones, forward shapes, option handling."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import nn

from miakit.errors import MiakitError
from miakit.models import MODELS, build_model

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


@pytest.mark.parametrize("arch", sorted(set(MODELS) - {"mlp"}))
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
