"""Loss traces: shape [E+1, N] float16, rows equal to the losses of the model at each epoch."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from miakit.config import TrainConfig
from miakit.models import build_model
from miakit.train.inputs import Normalization
from miakit.train.trainer import train_model


def pool(n: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def test_trace_rows_are_the_losses_of_every_pool_record_before_and_after_each_epoch() -> None:
    x, y = pool()
    members = torch.arange(0, 50, 2)  # the other half are non-members, traced alike
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, label_smoothing=0.1)

    def model_after(epochs: int) -> tuple[nn.Module, nn.Module, np.ndarray]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))
        initial = copy.deepcopy(model)
        cfg_e = cfg.model_copy(update={"epochs": epochs})
        report = train_model(model, x[members], y[members], cfg_e, 3, trace_on=(x, y))
        return model, initial, report.trace

    final, initial, trace = model_after(3)
    assert trace.shape == (4, 50) and trace.dtype == "float16"
    expected = [losses(initial, x, y)]
    expected += [losses(model_after(e)[0], x, y) for e in (1, 2)]  # constant lr: same path
    expected.append(losses(final, x, y))
    for row, direct in zip(trace, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(row).float(), direct, rtol=1e-3, atol=1e-4)
    assert (trace[-1][members.numpy()].mean()) < trace[0][members.numpy()].mean()


def test_image_traces_use_the_records_as_they_are_not_augmented() -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(20, 8, 8, 3, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 3, (20,), generator=g)
    norm = Normalization((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    cfg = TrainConfig.model_validate(
        {"epochs": 1, "batch_size": 5, "augment": {"flip": True, "crop_padding": 2}}
    )
    torch.manual_seed(0)
    model = build_model("cnn", (8, 8, 3), 3)
    report = train_model(model, x[:10], y[:10], cfg, 1, augment_seed=2, norm=norm, trace_on=(x, y))
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    direct = losses(model, (x.permute(0, 3, 1, 2).float() / 255 - mean) / std, y)
    torch.testing.assert_close(
        torch.from_numpy(report.trace[-1]).float(), direct, rtol=1e-3, atol=1e-4
    )
    assert report.trace_seconds > 0


def mlp_for_traces(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))


def test_trace_every_keeps_the_due_rows_of_the_full_trace_in_every_trainer() -> None:
    """trace_every = 2 over 5 epochs keeps epochs 0, 2, 4 and the last, 5: the same rows as the
    full trace (tracing does not change the training path), in the plain, batched and DP-SGD
    trainers."""
    from miakit.config.defences import DPConfig
    from miakit.defences.dp import train_private
    from miakit.train.batched import train_batched

    x, y = pool()
    rows = [torch.arange(0, 50, 2), torch.arange(1, 50, 2)]
    full = TrainConfig(epochs=5, batch_size=8, lr=0.05, optimizer="sgd")
    sparse = full.model_copy(update={"trace_every": 2})
    kept = [0, 2, 4, 5]

    def plain(cfg):
        return train_model(mlp_for_traces(), x[rows[0]], y[rows[0]], cfg, 3, trace_on=(x, y))

    def batched(cfg):
        models = [mlp_for_traces(m) for m in range(2)]
        return train_batched(models, x, y, rows, cfg, [3, 4], trace_on=(x, y))

    def private(cfg):
        dp = DPConfig(enabled=True, noise_multiplier=1.0)
        model = mlp_for_traces()
        return train_private(model, x[rows[0]], y[rows[0]], cfg, dp, seed=0, trace_on=(x, y))[0]

    assert plain(full).trace_epochs == [0, 1, 2, 3, 4, 5]
    for dense_report, sparse_report in [
        (plain(full), plain(sparse)),
        *zip(batched(full), batched(sparse), strict=True),
        (private(full), private(sparse)),
    ]:
        assert sparse_report.trace_epochs == kept
        np.testing.assert_array_equal(sparse_report.trace, dense_report.trace[kept])


def test_a_trace_thinned_by_trace_every_still_ends_at_the_epoch_stopped_at() -> None:
    """Early stopping after epoch 2 (accuracy cannot improve at a vanishing rate) with a row due
    only every 5 epochs: rows before training and at the stop."""
    x, y = pool()
    cfg = TrainConfig(
        epochs=10, batch_size=8, lr=1e-12, optimizer="sgd", trace_every=5,
        early_stopping_patience=1,
    )  # fmt: skip
    report = train_model(mlp_for_traces(), x[:25], y[:25], cfg, 3, trace_on=(x, y), held_out=(x, y))
    assert report.epochs == 2
    assert report.trace_epochs == [0, 2] and report.trace.shape == (2, 50)
