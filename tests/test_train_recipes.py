"""The one-model trainer's recipe: schedules, warm-up, label smoothing, early stopping, seeds."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from miakit.config import TrainConfig
from miakit.errors import MiakitError
from miakit.train.schedule import lr_factor
from miakit.train.trainer import train_model


def features(n: int = 60, d: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_cosine_with_warmup_matches_the_formula() -> None:
    cfg = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=2)
    spe, total = 5, 50
    for step in [0, 3, 9, 10, 25, 49]:
        ramp = min(1.0, (step + 1) / 10)
        assert lr_factor(cfg, step, spe) == pytest.approx(
            ramp * (1 + math.cos(math.pi * step / total)) / 2
        )


def test_lira_cosine_is_the_reference_codes_formula() -> None:
    """LiRA's train.py: lr · cos(progress · 7π / 16) · clip(100 · progress, 0, 1)."""
    cfg = TrainConfig(epochs=100, schedule="lira-cosine")
    spe, total = 4, 400
    for step, expected in [(0, 0.0), (2, 0.5 * math.cos(2 / 400 * 7 * math.pi / 16))]:
        assert lr_factor(cfg, step, spe) == pytest.approx(expected)
    for step in [4, 100, 399]:  # past the 1% warm-up
        assert lr_factor(cfg, step, spe) == pytest.approx(math.cos(step / total * 7 * math.pi / 16))


def test_cosine_epoch_is_constant_within_an_epoch() -> None:
    cfg = TrainConfig(epochs=4, schedule="cosine-epoch")
    factors = [lr_factor(cfg, s, 3) for s in range(12)]
    expected = [(1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert factors == pytest.approx([f for f in expected for _ in range(3)])


def test_weight_decay_on_weights_spares_biases_and_batchnorm() -> None:
    """One SGD step on a zero loss: only the decay moves parameters, w ← w − lr · wd · w."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    before = copy.deepcopy(model.state_dict())
    cfg = TrainConfig(
        optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.1, weight_decay_on="weights",
        epochs=1, batch_size=60,
    )  # fmt: skip
    x, y = features()
    zero_loss = nn.Sequential(model, _Zero())
    train_model(zero_loss, x, y, cfg, order_seed=1)
    for name, value in model.named_parameters():
        factor = 1 - 0.5 * 0.1 if name.endswith("weight") and value.ndim == 2 else 1.0
        torch.testing.assert_close(value, before[name] * factor, msg=name)


class _Zero(nn.Module):
    """Logits that keep the graph but carry no gradient to the model: 0 · input."""

    def forward(self, x):
        return x * 0.0


def test_step_schedule_multiplies_by_gamma_at_each_milestone() -> None:
    cfg = TrainConfig(epochs=10, schedule="step", milestones=[3, 6], gamma=0.1)
    assert [lr_factor(cfg, e * 4, 4) for e in (0, 2, 3, 5, 6, 9)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


def test_onecycle_rises_then_falls_linearly_to_zero() -> None:
    cfg = TrainConfig(epochs=10, schedule="onecycle", warmup_epochs=2)
    spe = 10  # 100 steps, 20 of warm-up
    assert lr_factor(cfg, 0, spe) == pytest.approx(1 / 20)
    assert lr_factor(cfg, 19, spe) == pytest.approx(1.0)
    assert lr_factor(cfg, 60, spe) == pytest.approx(40 / 80)
    assert lr_factor(cfg, 99, spe) == pytest.approx(1 / 80)


def test_warmup_from_starts_the_ramp_there() -> None:
    cfg = TrainConfig(epochs=10, schedule="onecycle", warmup_epochs=2, warmup_from=0.2)
    spe = 10  # 100 steps, 20 of warm-up: 0.2 + 0.8 · (s + 1) / 20
    assert lr_factor(cfg, 0, spe) == pytest.approx(0.24)
    assert lr_factor(cfg, 9, spe) == pytest.approx(0.6)
    assert lr_factor(cfg, 19, spe) == pytest.approx(1.0)
    assert lr_factor(cfg, 60, spe) == pytest.approx(40 / 80)


def test_constant_schedule_is_flat() -> None:
    assert {lr_factor(TrainConfig(epochs=3), s, 7) for s in range(21)} == {1.0}


def test_full_batch_sgd_equals_a_hand_written_loop() -> None:
    """Plain SGD, weight decay, cosine with warm-up and label smoothing, recomputed by hand."""
    x, y = features()
    cfg = TrainConfig(
        optimizer="sgd",
        lr=0.5,
        momentum=0.0,
        weight_decay=0.01,
        epochs=6,
        batch_size=len(y),
        schedule="cosine",
        warmup_epochs=2,
        label_smoothing=0.2,
    )
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    w, b = (p.detach().clone().requires_grad_() for p in (model.weight, model.bias))
    train_model(model, x, y, cfg, order_seed=1)
    eps, classes = 0.2, 3
    for step in range(6):
        ramp = min(1.0, (step + 1) / 2)
        lr = 0.5 * ramp * (1 + math.cos(math.pi * step / 6)) / 2
        logp = torch.log_softmax(x @ w.T + b, dim=1)
        target = torch.full_like(logp, eps / classes)
        target[torch.arange(len(y)), y] += 1 - eps
        loss = -(target * logp).sum(1).mean()
        gw, gb = torch.autograd.grad(loss, (w, b))
        with torch.no_grad():
            w -= lr * (gw + 0.01 * w)
            b -= lr * (gb + 0.01 * b)
    torch.testing.assert_close(model.weight, w.detach())
    torch.testing.assert_close(model.bias, b.detach())


def test_lookahead_equals_a_hand_written_loop() -> None:
    """Full-batch SGD with lookahead: every 5 steps slow ← d·slow + (1 − d)·w and w ← slow,
    d = 0.95⁵ (t / T)³; the model ends on the slow weights (here those of step 10 of 12)."""
    x, y = features()
    cfg = TrainConfig(
        optimizer="sgd", lr=0.3, momentum=0.0, epochs=12, batch_size=len(y), lookahead=True
    )
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    w, b = (p.detach().clone().double().requires_grad_() for p in (model.weight, model.bias))
    slow = [w.detach().clone(), b.detach().clone()]
    train_model(model, x, y, cfg, order_seed=1)
    for step in range(1, 13):
        loss = nn.functional.cross_entropy(x.double() @ w.T + b, y)
        grads = torch.autograd.grad(loss, (w, b))
        with torch.no_grad():
            for p, g in zip((w, b), grads, strict=True):
                p -= 0.3 * g
            if step % 5 == 0:
                decay = 0.95**5 * (step / 12) ** 3
                for p, s in zip((w, b), slow, strict=True):
                    s.mul_(decay).add_((1 - decay) * p)
                    p.copy_(s)
    torch.testing.assert_close(model.weight.double(), slow[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.bias.double(), slow[1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model.weight.double(), w.detach(), atol=1e-3)  # steps 11, 12 dropped


def test_norm_bias_lr_scale_multiplies_their_step_and_keeps_their_decay_per_step() -> None:
    """One full-batch SGD step: BatchNorm biases move by s·lr·g + lr·wd·b, the rest by
    lr·(g + wd·p); gradients recomputed independently with autograd."""
    x, y = features()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    nn.init.normal_(model[1].bias)  # not 0, so that its decay shows
    reference = copy.deepcopy(model)
    cfg = TrainConfig(
        optimizer="sgd", lr=0.2, momentum=0.0, weight_decay=0.1, epochs=1, batch_size=len(y),
        norm_bias_lr_scale=8.0,
    )  # fmt: skip
    train_model(model, x, y, cfg, order_seed=1)
    loss = nn.functional.cross_entropy(reference(x), y)
    names, params = zip(*reference.named_parameters(), strict=True)
    grads = dict(zip(names, torch.autograd.grad(loss, params), strict=True))
    for name, before in reference.named_parameters():
        g, p = grads[name], before.detach()
        expected = p - 0.2 * 8 * g - 0.2 * 0.1 * p if name == "1.bias" else p - 0.2 * (g + 0.1 * p)
        torch.testing.assert_close(model.get_parameter(name), expected, msg=name)


def test_same_seeds_give_the_same_model_and_another_order_another() -> None:
    x, y = features()
    cfg = TrainConfig(epochs=3, batch_size=8)

    def run(order_seed: int) -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Linear(5, 3)
        train_model(model, x, y, cfg, order_seed)
        return model.weight.detach()

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_early_stopping_stops_when_held_out_accuracy_stalls() -> None:
    x, y = features(n=40)
    cfg = TrainConfig(epochs=50, batch_size=8, lr=1e-6, early_stopping_patience=2)
    held_out = features(n=30, seed=1)
    report = train_model(nn.Linear(5, 3), x, y, cfg, 0, trace_on=(x, y), held_out=held_out)
    assert report.epochs < 50  # lr 1e-6: held-out accuracy cannot keep improving
    assert report.trace.shape == (report.epochs + 1, 40)
    assert report.held_out_accuracy is not None


def test_early_stopping_without_held_out_records_is_an_error() -> None:
    x, y = features()
    with pytest.raises(MiakitError, match="held-out"):
        train_model(nn.Linear(5, 3), x, y, TrainConfig(early_stopping_patience=3), 0)


def test_augmentation_needs_its_seed_and_images() -> None:
    x, y = features()
    cfg = TrainConfig.model_validate({"augment": {"flip": True}, "epochs": 1})
    with pytest.raises(MiakitError, match="augmentation seed"):
        train_model(nn.Linear(5, 3), x, y, cfg, 0)
    with pytest.raises(MiakitError, match="images"):
        train_model(copy.deepcopy(nn.Linear(5, 3)), x, y, cfg, 0, augment_seed=1)


@pytest.mark.slow
def test_compiled_training_equals_eager_and_compiles_once_per_run(one_thread) -> None:
    """train.compile: the same model as eager training, and the models after the first of a run
    reuse its compiled graph (torch.compile caches by code; parameters are graph inputs)."""
    from torch._dynamo.utils import counters

    from miakit.models import build_model

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 8, 8, 3), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=2, batch_size=32)

    def trained(seed: int, compiled: bool) -> nn.Module:
        torch.manual_seed(seed)
        model = build_model("cnn", (8, 8, 3), 10)
        train_model(model, x, y, cfg.model_copy(update={"compile": compiled}), seed)
        return model

    torch._dynamo.reset()
    counters.clear()
    compiled = [trained(seed, True) for seed in range(3)]
    assert counters["stats"]["unique_graphs"] == 1
    for seed, model in enumerate(compiled):
        eager = trained(seed, False)
        for a, b in zip(model.state_dict().values(), eager.state_dict().values(), strict=True):
            torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-5)
