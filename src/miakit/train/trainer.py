"""Training one model on its keep row, deterministic for fixed seeds on CPU (`train_model`), and
what every trainer shares: the device, the optimizer and its parameter groups, the loss.

Data stay as tensors on the training device (images as uint8); batches are drawn by indexing with
a seeded permutation, so no DataLoader (or its worker processes) is involved. On CUDA the model
runs in channels_last memory under bf16 autocast when the config asks (the default), and can be
compiled: torch.compile caches the graph by code, so every model of a run reuses one compilation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from miakit.config import TrainConfig
from miakit.errors import MiakitError
from miakit.train.augment import Augmenter
from miakit.train.inputs import Normalization, autocast, model_inputs
from miakit.train.lookahead import Lookahead
from miakit.train.loop import Lane, Shuffled, TrainReport, check_options, train_lanes
from miakit.train.traces import LossTrace


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise MiakitError("train.device is 'cuda' but no CUDA device is available; use 'auto'")
    return torch.device(requested)


def decays(cfg: TrainConfig, parameter: Tensor) -> bool:
    """Whether weight decay applies to a parameter (its shape per model): every one, or with
    weight_decay_on 'weights' those of conv and linear layers only (two or more dimensions)."""
    return cfg.weight_decay_on == "all" or parameter.ndim >= 2


NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def norm_bias_names(model: nn.Module) -> set[str]:
    """Names of the parameters that are normalization layers' biases (train.norm_bias_lr_scale)."""
    return {
        f"{name}.bias" if name else "bias"
        for name, module in model.named_modules()
        if isinstance(module, NORMS) and isinstance(module.bias, nn.Parameter)
    }


def rate_and_decay(
    cfg: TrainConfig, name: str, parameter: Tensor, norm_biases: set[str]
) -> tuple[float, float]:
    """(lr scale, weight decay) of one parameter: normalization biases take the lr ×
    norm_bias_lr_scale and the weight decay ÷ it, so that their decay per step is unchanged."""
    decay = cfg.weight_decay if decays(cfg, parameter) else 0.0
    scale = cfg.norm_bias_lr_scale if name in norm_biases else 1.0
    return scale, decay / scale


def make_optimizer(
    model: nn.Module,
    cfg: TrainConfig,
    tensors: dict[str, Tensor] | None = None,
    *,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """torch.optim's SGD or Adam over the parameters of `model` that train, or over `tensors` in
    their place (by parameter name; the stacked trainer's [k, ...] slices of k models' stacked
    parameters, `model` then giving each one's names and per-model shape). Each parameter group's
    `lr_scale` multiplies the scheduled lr (set_lr). fused: torch's fused kernel, one pass over
    each parameter (the stacked trainer's few large tensors: about 3× faster on CPU than the
    default per-operation update, whose rounding it does not match bit for bit)."""
    norm_biases = norm_bias_names(model)
    groups: dict[tuple[float, float], list[Tensor]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = rate_and_decay(cfg, name, p, norm_biases)
            groups.setdefault(key, []).append(p if tensors is None else tensors[name])
    param_groups = [
        {"params": params, "lr_scale": scale, "weight_decay": decay}
        for (scale, decay), params in groups.items()
    ]
    options = {"fused": True} if fused else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **options
        )
    return torch.optim.Adam(param_groups, lr=cfg.lr, **options)


def set_lr(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """The scheduled lr for the next step, times each group's scale."""
    for group in optimizer.param_groups:
        group["lr"] = rate * group["lr_scale"]


def mixed_loss(
    logits: Tensor, y: Tensor, y_mix: Tensor, lam: float | Tensor, label_smoothing: float
) -> Tensor:
    """Per-record loss, shaped like y: lam · CE(y) + (1 − lam) · CE(y_mix), lam = 1 without CutMix."""
    flat = logits.float().flatten(0, -2)

    def ce(target: Tensor) -> Tensor:
        loss = F.cross_entropy(
            flat, target.flatten(), reduction="none", label_smoothing=label_smoothing
        )
        return loss.view(target.shape)

    if isinstance(lam, float) and lam == 1.0:
        return ce(y)
    return lam * ce(y) + (1 - lam) * ce(y_mix)


DATA_INIT_RECORDS = 5000


@torch.no_grad()
def init_from_data(model: nn.Module, x: Tensor, norm: Normalization | None) -> None:
    """Models that initialize a layer from their training records (the fast net's whitened stem)
    do so from the first DATA_INIT_RECORDS of them, before the first step."""
    init = getattr(model, "init_from_data", None)
    if init is not None:
        init(model_inputs(x[:DATA_INIT_RECORDS], norm).float())


def prepare_model(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The callable that trains `model` in place: channels_last and compiled where configured."""
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if cfg.compile else model


class PlainStep:
    """One model, torch.optim's SGD or Adam; on CUDA channels_last, bf16 autocast and compiled
    where configured (the loop's step for `train_model`)."""

    def __init__(
        self, model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, norm: Normalization | None
    ) -> None:
        self.model, self.x, self.y, self.cfg = model, x, y, cfg
        self.bf16 = cfg.bf16
        init_from_data(model, x, norm)
        self.net = prepare_model(model, cfg, x.device)
        self.optimizer = make_optimizer(model, cfg)

    def train(
        self, lanes: list[Lane], batches: dict[int, Tensor], rates: dict[int, float]
    ) -> dict[int, Tensor]:
        ((m, positions),) = batches.items()
        lane = lanes[m]
        self.model.train()
        set_lr(self.optimizer, rates[m])
        batch = lane.augmenter(self.x[positions], self.y[positions], positions, lane.epoch)
        with autocast(self.x.device, self.cfg.bf16):
            logits = self.net(batch.x)
        smoothing = self.cfg.label_smoothing
        loss = mixed_loss(logits, batch.y, batch.y_mix, batch.lam, smoothing).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {m: loss}

    def forward(self, m: int) -> Callable[[Tensor], Tensor]:
        self.model.eval()
        return self.net


def train_model(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: TrainConfig,
    order_seed: int,
    *,
    augment_seed: int | None = None,
    norm: Normalization | None = None,
    trace_on: tuple[Tensor, Tensor] | None = None,
    held_out: tuple[Tensor, Tensor] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> TrainReport:
    """Train `model` in place on (x, y), already on the training device, with `loop.train_lanes`
    and a `PlainStep`: batches of a permutation drawn from `order_seed` each epoch.

    trace_on: records (normally the whole pool) whose loss is recorded before training and after
    every epoch (every train.trace_every-th); the report then carries the trace [rows, N] float16
    and its epochs. held_out: records whose accuracy the report gives and, with
    train.early_stopping_patience, drives early stopping: training stops after that many epochs
    without a new best, keeping the last weights (as the LiRA reference code does), and the trace
    then ends at the epoch stopped at. on_epoch(done, total) is called after every epoch, for
    progress bars. Raises MiakitError on early stopping without held-out records.
    """
    check_options("plain", cfg, model)
    started = time.perf_counter()
    augmenter = Augmenter(cfg.augment, norm, x.device, augment_seed, len(y))
    step = PlainStep(model, x, y, cfg, norm)
    batches = Shuffled(len(y), cfg.batch_size, order_seed, x.device)
    lane = Lane(
        batches=batches,
        augmenter=augmenter,
        epochs=cfg.epochs,
        trace=LossTrace(cfg.trace_every, cfg.epochs) if trace_on is not None else None,
        lookahead=(
            Lookahead(model, cfg.epochs * batches.steps_per_epoch) if cfg.lookahead else None
        ),
    )
    (report,) = train_lanes(
        step, [lane], cfg, started, norm=norm, trace_on=trace_on, held_out=held_out,
        on_epoch=on_epoch,
    )  # fmt: skip
    return report


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: Tensor, norm: Normalization | None = None, batch_size: int = 4096
) -> np.ndarray:
    """Logits [N, C] as float32, in eval mode."""
    model.eval()
    return torch.cat(
        [model(model_inputs(chunk, norm)).float().cpu() for chunk in x.split(batch_size)]
    ).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=-1) == labels).mean()) if len(labels) else float("nan")
