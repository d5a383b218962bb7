"""The batched trainer equals training each model alone with the same seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from miakit.config import TrainConfig
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.train.batched import train_batched
from miakit.train.inputs import Normalization
from miakit.train.trainer import train_model


def data(n: int = 120, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 12, generator=g), torch.randint(0, 4, (n,), generator=g)


def keep_rows(n: int, sizes: list[int]) -> list[torch.Tensor]:
    rng = np.random.default_rng(1)
    return [torch.from_numpy(np.sort(rng.permutation(n)[:size])) for size in sizes]


def both_ways(make, x, y, rows, cfg, norm=None, augment=False):
    """Models trained one by one and batched, from the same inits and seeds; and their reports."""
    order = [11 + m for m in range(len(rows))]
    aug = [21 + m for m in range(len(rows))] if augment else None
    alone, stacked = [], []
    for m in range(len(rows)):
        torch.manual_seed(m)
        alone.append(make())
        torch.manual_seed(m)
        stacked.append(make())
    reports = [
        train_model(
            alone[m], x[rows[m]], y[rows[m]], cfg, order[m],
            augment_seed=aug[m] if aug else None, norm=norm, trace_on=(x, y),
        )
        for m in range(len(rows))
    ]  # fmt: skip
    batched = train_batched(stacked, x, y, rows, cfg, order, aug, norm=norm, trace_on=(x, y))
    return alone, stacked, reports, batched


def assert_same_models(alone, stacked, atol: float) -> None:
    for a, b in zip(alone, stacked, strict=True):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(q, p, atol=atol, rtol=1e-4, msg=name)


def test_sgd_nesterov_mlps_of_different_sizes_equal_training_alone() -> None:
    x, y = data()
    rows = keep_rows(120, [60, 45, 71, 33])  # different batch counts and last-batch sizes
    cfg = TrainConfig(
        optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, epochs=4,
        batch_size=16, schedule="cosine", warmup_epochs=1, label_smoothing=0.1,
    )  # fmt: skip
    alone, stacked, reports, batched = both_ways(
        lambda: build_model("mlp", (12,), 4, hidden=[32, 16], activation="tanh"), x, y, rows, cfg
    )
    assert_same_models(alone, stacked, atol=1e-5)
    for r, b in zip(reports, batched, strict=True):
        assert b.trace.shape == r.trace.shape == (5, 120)
        np.testing.assert_allclose(b.trace.astype(np.float32), r.trace, rtol=2e-3, atol=1e-4)
        assert b.steps == r.steps


@pytest.mark.parametrize(
    ("sizes", "schedule", "decay_on"),
    [
        ([60, 50, 70], "constant", "all"),  # a model ends early: two cohorts, two optimizers
        ([60, 60, 60], "cosine", "all"),  # every model at every step: one optimizer
        ([60, 60, 60], "lira-cosine", "weights"),  # one optimizer, two groups: decayed and not
        ([60, 50, 70], "cosine-epoch", "weights"),
    ],
)
def test_adam_mlps_equal_training_alone(sizes, schedule, decay_on) -> None:
    """Adam divides by the gradient's running RMS, so rounding-level differences in a gradient
    that nearly cancels become steps of up to lr: parameters agree to about lr, logits closely."""
    x, y = data()
    rows = keep_rows(120, sizes)
    cfg = TrainConfig(
        optimizer="adam",
        lr=1e-3,
        weight_decay=1e-2,
        weight_decay_on=decay_on,
        epochs=3,
        batch_size=16,
        schedule=schedule,
    )
    alone, stacked, _, _ = both_ways(
        lambda: build_model("mlp", (12,), 4, hidden=[32]), x, y, rows, cfg
    )
    assert_same_models(alone, stacked, atol=1e-3)
    for a, b in zip(alone, stacked, strict=True):
        torch.testing.assert_close(b(x), a(x), atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("flip", [True, "alternate"])
def test_augmented_cnns_equal_training_alone(flip) -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 8, 8, 3, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 3, (40,), generator=g)
    rows = keep_rows(40, [20, 14])
    cfg = TrainConfig.model_validate(
        {
            "optimizer": "sgd", "lr": 0.05, "epochs": 2, "batch_size": 8,
            "augment": {"flip": flip, "crop_padding": 2, "cutout": 3, "cutmix": 0.5},
        }
    )  # fmt: skip
    norm = Normalization((0.5,) * 3, (0.25,) * 3)
    alone, stacked, _, _ = both_ways(
        lambda: build_model("cnn", (8, 8, 3), 3), x, y, rows, cfg, norm, augment=True
    )
    assert_same_models(alone, stacked, atol=1e-5)


def test_batchnorm_models_are_grouped_by_batch_size_and_equal_training_alone() -> None:
    x, y = data(80)

    def make() -> nn.Module:
        return nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))

    cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=2, batch_size=16)
    alone, stacked, _, _ = both_ways(make, x, y, keep_rows(80, [40, 35, 50]), cfg)
    assert_same_models(alone, stacked, atol=1e-5)  # includes BatchNorm running statistics


def test_unsupported_settings_are_errors() -> None:
    x, y = data()
    rows = keep_rows(120, [30, 30])
    models = [build_model("mlp", (12,), 4, hidden=[8], dropout=0.5) for _ in rows]
    with pytest.raises(MiakitError, match="dropout"):
        train_batched(models, x, y, rows, TrainConfig(epochs=1), [0, 1])
    models = [build_model("mlp", (12,), 4, hidden=[8]) for _ in rows]
    with pytest.raises(MiakitError, match="early_stopping"):
        train_batched(models, x, y, rows, TrainConfig(early_stopping_patience=2), [0, 1])
    with pytest.raises(MiakitError, match="lookahead"):
        train_batched(models, x, y, rows, TrainConfig(lookahead=True), [0, 1])


def test_fast_nets_with_their_frozen_whitened_stems_equal_training_alone() -> None:
    """Each fast net whitens its stem from its own records and keeps it frozen, batched or not;
    its BatchNorm shifts take the scaled learning rate in both trainers."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(48, 16, 16, 3, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 3, (48,), generator=g)
    rows = keep_rows(48, [24, 24])
    cfg = TrainConfig(
        optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-3, norm_bias_lr_scale=4.0,
        epochs=1, batch_size=8,
    )  # fmt: skip
    norm = Normalization((0.5,) * 3, (0.25,) * 3)
    alone, stacked, _, _ = both_ways(
        lambda: build_model("fastnet", (16, 16, 3), 3), x, y, rows, cfg, norm
    )
    assert_same_models(alone, stacked, atol=1e-5)
    fresh = build_model("fastnet", (16, 16, 3), 3)
    fresh.init_from_data(((x[rows[1]].permute(0, 3, 1, 2) / 255) - 0.5) / 0.25)
    torch.testing.assert_close(stacked[1].stem[0].weight, fresh.stem[0].weight)
    assert not torch.equal(stacked[0].stem[0].weight, stacked[1].stem[0].weight)
