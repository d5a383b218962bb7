"""Training one model on its keep row, deterministic for fixed seeds on CPU.

Data stay as tensors on the training device (images as uint8); batches are drawn by indexing with
a seeded permutation, so no DataLoader (or its worker processes) is involved. On CUDA the model
runs in channels_last memory under bf16 autocast when the config asks (the default), and can be
compiled: torch.compile caches the graph by code, so every model of a run reuses one compilation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from miakit.config import TrainConfig
from miakit.errors import MiakitError
from miakit.train.augment import Augmenter
from miakit.train.inputs import Normalization, autocast, model_inputs
from miakit.train.lookahead import Lookahead
from miakit.train.schedule import lr_factor
from miakit.train.traces import LossTrace, record_losses


@dataclass(frozen=True)
class TrainReport:
    seconds: float
    steps: int
    final_loss: float
    epochs: int
    trace: np.ndarray | None = None
    trace_epochs: list[int] | None = None
    trace_seconds: float = 0.0
    held_out_accuracy: float | None = None


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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch.optim's SGD or Adam; each parameter group's `lr_scale` multiplies the scheduled lr
    (set_lr)."""
    norm_biases = norm_bias_names(model)
    groups: dict[tuple[float, float], list[Tensor]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(rate_and_decay(cfg, name, p, norm_biases), []).append(p)
    param_groups = [
        {"params": params, "lr_scale": scale, "weight_decay": decay}
        for (scale, decay), params in groups.items()
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov
        )
    return torch.optim.Adam(param_groups, lr=cfg.lr)


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
    """Train `model` in place on (x, y), already on the training device.

    trace_on: records (normally the whole pool) whose loss is recorded before training and after
    every epoch (every train.trace_every-th); the report then carries the trace [rows, N] float16
    and its epochs. held_out: records whose accuracy the report gives and, with
    train.early_stopping_patience, drives early stopping: training stops after that many epochs
    without a new best, keeping the last weights (as the LiRA reference code does), and the trace
    then ends at the epoch stopped at. on_epoch(done,
    total) is called after every epoch, for progress bars.
    """
    patience = cfg.early_stopping_patience
    if patience is not None and held_out is None:
        raise MiakitError("train.early_stopping_patience needs held-out records (a test split)")
    start = time.perf_counter()
    device = x.device
    order_generator = torch.Generator().manual_seed(order_seed)
    augmenter = Augmenter(cfg.augment, norm, device, augment_seed, len(y))
    init_from_data(model, x, norm)
    net = prepare_model(model, cfg, device)
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(y) / cfg.batch_size)
    trace = TraceRecorder(net, model, trace_on, norm, cfg)
    lookahead = Lookahead(model, cfg.epochs * steps_per_epoch) if cfg.lookahead else None
    best, best_epoch, epochs_run = -1.0, 0, 0
    steps, loss = 0, torch.tensor(float("nan"))
    trace.record(0)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(y), generator=order_generator).to(device)
        for rows in order.split(cfg.batch_size):
            set_lr(optimizer, cfg.lr * lr_factor(cfg, steps, steps_per_epoch))
            batch = augmenter(x[rows], y[rows], rows, epoch - 1)
            with autocast(device, cfg.bf16):
                logits = net(batch.x)
            smoothing = cfg.label_smoothing
            loss = mixed_loss(logits, batch.y, batch.y_mix, batch.lam, smoothing).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if lookahead is not None:
                lookahead.after_step(steps)
        epochs_run = epoch
        stopping = False
        if patience is not None:
            accuracy_now = held_out_accuracy(net, model, held_out, norm, cfg.bf16)
            if accuracy_now > best:
                best, best_epoch = accuracy_now, epoch
            stopping = epoch - best_epoch >= patience
        if lookahead is not None and (stopping or epoch == cfg.epochs):
            lookahead.finish()  # before the last trace row, which is the final model's
        trace.record(epoch, stopping)
        if on_epoch is not None:
            on_epoch(epoch, cfg.epochs)
        if stopping:
            break
    return TrainReport(
        seconds=time.perf_counter() - start,
        steps=steps,
        final_loss=loss.item(),
        epochs=epochs_run,
        trace=trace.array(),
        trace_epochs=trace.epochs(),
        trace_seconds=trace.seconds,
        held_out_accuracy=(
            held_out_accuracy(net, model, held_out, norm, cfg.bf16) if held_out else None
        ),
    )


class TraceRecorder:
    """Adds a loss-trace row when one is due, timing itself; does nothing without records."""

    def __init__(
        self,
        net: nn.Module,
        model: nn.Module,
        records: tuple[Tensor, Tensor] | None,
        norm: Normalization | None,
        cfg: TrainConfig,
    ) -> None:
        self.net, self.model, self.records, self.norm = net, model, records, norm
        self.bf16 = cfg.bf16
        self.trace = LossTrace(cfg.trace_every, cfg.epochs) if records is not None else None
        self.seconds = 0.0

    def record(self, epoch: int, stopping: bool = False) -> None:
        """The row after `epoch` (0: before training), if due; `stopping`: the last one run."""
        if self.trace is None or self.records is None or not self.trace.due(epoch, stopping):
            return
        tick = time.perf_counter()
        self.model.eval()
        with autocast(self.records[0].device, self.bf16):
            self.trace.add(epoch, record_losses(self.net, *self.records, self.norm))
        self.seconds += time.perf_counter() - tick

    def array(self) -> np.ndarray | None:
        return self.trace.array() if self.trace is not None else None

    def epochs(self) -> list[int] | None:
        return self.trace.epochs if self.trace is not None else None


@torch.no_grad()
def held_out_accuracy(
    net: nn.Module,
    model: nn.Module,
    records: tuple[Tensor, Tensor],
    norm: Normalization | None,
    bf16: bool,
) -> float:
    model.eval()
    x, y = records
    with autocast(x.device, bf16):
        logits = torch.cat([net(model_inputs(chunk, norm)) for chunk in x.split(4096)])
    return (logits.argmax(-1) == y).float().mean().item()


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
