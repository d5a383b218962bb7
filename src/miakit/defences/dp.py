"""DP-SGD training with Opacus (Abadi et al. 2016, "Deep Learning with Differential Privacy";
Yousefpour et al. 2021, "Opacus").

Each step draws a Poisson sample of the training records (rate q = 1 / steps per epoch, as
Opacus' DPDataLoader), clips every record's gradient to `max_grad_norm` and adds Gaussian noise of
std σ · max_grad_norm. The accountant (RDP, Mironov 2017; or PRV, Gopi et al. 2021) turns
(σ, q, steps) into the ε spent at δ. Sampling and noise come from torch generators seeded from the
model's seed, so a run is reproducible on CPU; for a cryptographic guarantee use Opacus' secure
mode instead (not what an audit of the mechanism needs).

No DataLoader: the records stay as tensors on the device, as in miakit's trainer.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from opacus import GradSampleModule
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch import Tensor, nn

from miakit.config import TrainConfig
from miakit.config.defences import DPConfig
from miakit.errors import MiakitError
from miakit.seeding import derive_seed
from miakit.train.augment import Augmenter
from miakit.train.inputs import Normalization
from miakit.train.loop import (
    Lane,
    Poisson,
    TrainReport,
    check_options,
    held_out_accuracy,
    train_lanes,
)
from miakit.train.traces import LossTrace
from miakit.train.trainer import make_optimizer, mixed_loss, set_lr

#: Opacus' backward hooks on a first layer whose input needs no gradient warn; harmless here
HOOK_WARNING = "Full backward hook is firing when gradients are computed with respect to module"


@dataclass(frozen=True)
class PrivacySpent:
    """What a DP-SGD model spent: recorded in meta.json and shown in the report."""

    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    accountant: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule(num_records: int, cfg: TrainConfig) -> tuple[float, int, int]:
    """(sample rate q, steps per epoch, expected batch size), as Opacus' DPDataLoader sets them."""
    steps_per_epoch = math.ceil(num_records / cfg.batch_size)
    sample_rate = 1 / steps_per_epoch
    return sample_rate, steps_per_epoch, int(num_records * sample_rate)


def noise_multiplier_for(dp: DPConfig, sample_rate: float, steps: int) -> float:
    """σ as configured, or the smallest σ that keeps ε at or below dp.target_epsilon."""
    if dp.noise_multiplier is not None:
        return dp.noise_multiplier
    if dp.target_epsilon is None:
        raise MiakitError("dp: give noise_multiplier or target_epsilon")
    return float(
        get_noise_multiplier(
            target_epsilon=dp.target_epsilon,
            target_delta=dp.delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=dp.accountant,
        )
    )


def check_trainable(model: nn.Module, cfg: TrainConfig) -> None:
    """Stop with a clear message on what DP-SGD cannot do: per-record clipping needs per-record
    gradients (no BatchNorm), and the options in `loop.REFUSED["private"]`."""
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        names = "; ".join(sorted({str(e) for e in errors}))
        raise MiakitError(
            f"dp: this model cannot be trained with DP-SGD ({names}); use a model without "
            "BatchNorm, e.g. model.arch 'mlp' or 'cnn'"
        )
    check_options("private", cfg, model)


class PrivateStep:
    """The loop's step for `train_private`: Opacus' per-record clipping and Gaussian noise around
    torch.optim's SGD or Adam, full precision, not compiled; every step is counted by the
    accountant."""

    bf16 = False

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        cfg: TrainConfig,
        dp: DPConfig,
        sigma: float,
        expected_batch: int,
        noise: torch.Generator,
    ) -> None:
        self.model, self.x, self.y, self.cfg = model, x, y, cfg
        self.sigma = sigma
        self.net = GradSampleModule(model, loss_reduction="mean")
        self.optimizer = DPOptimizer(
            make_optimizer(model, cfg),
            noise_multiplier=sigma,
            max_grad_norm=dp.max_grad_norm,
            expected_batch_size=expected_batch,
            generator=noise,
        )
        self.accountant = create_accountant(dp.accountant)

    def train(
        self, lanes: list[Lane], batches: dict[int, Tensor], rates: dict[int, float]
    ) -> dict[int, Tensor]:
        ((m, rows),) = batches.items()
        lane = lanes[m]
        self.model.train()
        set_lr(self.optimizer, rates[m])
        batch = lane.augmenter(self.x[rows], self.y[rows], rows, lane.epoch)
        per_record = mixed_loss(self.net(batch.x), batch.y, batch.y, 1.0, self.cfg.label_smoothing)
        loss = per_record.sum() / max(len(rows), 1)  # the mean; 0 if no record drawn
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.accountant.step(noise_multiplier=self.sigma, sample_rate=lane.batches.rate)
        return {m: loss}

    def forward(self, m: int) -> Callable[[Tensor], Tensor]:
        self.model.eval()
        return self.model

    def close(self) -> None:
        """Opacus' hooks removed: the model is a plain module again."""
        self.optimizer.zero_grad(set_to_none=True)
        self.net.to_standard_module()


def train_private(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: TrainConfig,
    dp: DPConfig,
    seed: int,
    *,
    augment_seed: int | None = None,
    norm: Normalization | None = None,
    trace_on: tuple[Tensor, Tensor] | None = None,
    held_out: tuple[Tensor, Tensor] | None = None,
) -> tuple[TrainReport, PrivacySpent]:
    """Train `model` in place with DP-SGD on (x, y) (already on the training device) for
    cfg.epochs epochs with `loop.train_lanes` and a `PrivateStep`; returns the training report and
    the privacy spent.

    The train config's optimizer, lr, schedule, weight decay, label smoothing and augmentation
    apply; cfg.batch_size is the expected Poisson batch size. Full precision, not compiled.
    MiakitError for a model or option DP-SGD cannot train (`check_trainable`).
    """
    check_trainable(model, cfg)
    started = time.perf_counter()
    device = x.device
    sample_rate, steps_per_epoch, expected_batch = schedule(len(y), cfg)
    total_steps = cfg.epochs * steps_per_epoch
    sigma = noise_multiplier_for(dp, sample_rate, total_steps)
    sampler = torch.Generator(device=device).manual_seed(derive_seed(seed, "dp-sampling"))
    noise = torch.Generator(device=device).manual_seed(derive_seed(seed, "dp-noise"))
    step = PrivateStep(model, x, y, cfg, dp, sigma, expected_batch, noise)
    lane = Lane(
        batches=Poisson(len(y), steps_per_epoch, sampler),
        augmenter=Augmenter(cfg.augment, norm, device, augment_seed, len(y)),
        epochs=cfg.epochs,
        trace=LossTrace(cfg.trace_every, cfg.epochs) if trace_on is not None else None,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=HOOK_WARNING, category=UserWarning)
        try:
            (report,) = train_lanes(step, [lane], cfg, started, norm=norm, trace_on=trace_on)
        finally:
            step.close()
    if held_out is not None:  # of the plain module, after training
        accuracy = held_out_accuracy(step.forward(0), held_out, norm, bf16=False)
        report = replace(report, held_out_accuracy=accuracy)
    spent = PrivacySpent(
        epsilon=float(step.accountant.get_epsilon(delta=dp.delta)),
        delta=dp.delta,
        noise_multiplier=sigma,
        max_grad_norm=dp.max_grad_norm,
        sample_rate=sample_rate,
        steps=total_steps,
        accountant=dp.accountant,
    )
    return report, spent


__all__ = ["PrivacySpent", "noise_multiplier_for", "schedule", "train_private"]
