"""The training loop of every trainer: one model or many, plain or private, step by step.

A *lane* is one model's way through its epochs: which records it draws its batches from (a seeded
permutation per epoch, or a Poisson sample per step for DP-SGD), its augmentation draws, its
learning-rate schedule, its loss trace, its lookahead weights and early stopping. A *step* is what
differs between the trainers: given the batch and learning rate of every lane still running, it
updates their models once —

- `trainer.PlainStep`: one model and a torch.optim optimizer (`train_model`);
- `batched.StackedStep`: many models of one architecture at once, their parameters stacked and
  run under vmap, torch.optim over the stacks (`train_batched`);
- `dp.PrivateStep`: DP-SGD with Opacus' per-record clipping and noise (`train_private`).

`train_lanes` below is the whole loop; `REFUSED` is the one list of the options a step does not
support, checked by `check_options` before anything trains.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
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
    """One model's training: wall seconds (a batched model: its share), optimizer steps, the last
    batch's mean loss, epochs run, the loss trace [rows, N] float16 and its epochs, the seconds
    spent tracing, and the accuracy on held-out records."""

    seconds: float
    steps: int
    final_loss: float
    epochs: int
    trace: np.ndarray | None = None
    trace_epochs: list[int] | None = None
    trace_seconds: float = 0.0
    held_out_accuracy: float | None = None


#: The options a step does not support, each with why; every other train.* option works with
#: every step. The keys of USED say how a setting is recognised as in use.
REFUSED: dict[str, dict[str, str]] = {
    "plain": {},
    "stacked": {
        "train.early_stopping_patience": "the stacked models would stop at different steps",
        "train.lookahead": "the fast net's recipe, which uses it, is not a batched one",
        "model.dropout": "dropout draws cannot follow each model's own stream under vmap",
    },
    "private": {
        "train.early_stopping_patience": "the accountant's ε is for a fixed number of steps",
        "train.lookahead": "the fast net's recipe, whose BatchNorm DP-SGD cannot train",
        "train.batched": "Opacus clips the records of one model at a time",
        "train.augment.cutmix": "it mixes records, which DP-SGD cannot account for",
    },
}

USED: dict[str, Callable[[TrainConfig, nn.Module], bool]] = {
    "train.early_stopping_patience": lambda cfg, _: cfg.early_stopping_patience is not None,
    "train.lookahead": lambda cfg, _: cfg.lookahead,
    "train.batched": lambda cfg, _: cfg.batched,
    "train.augment.cutmix": lambda cfg, _: cfg.augment.cutmix > 0,
    "model.dropout": lambda _, model: any(
        isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()
    ),
}

STEP_NAMES = {"plain": "training", "stacked": "train.batched", "private": "DP-SGD (defences.dp)"}


def check_options(step: str, cfg: TrainConfig, model: nn.Module) -> None:
    """MiakitError naming the first option in use that `step` ('plain', 'stacked', 'private')
    does not support."""
    for setting, reason in REFUSED[step].items():
        if USED[setting](cfg, model):
            raise MiakitError(f"{setting} is not supported by {STEP_NAMES[step]}: {reason}")


class Shuffled:
    """Batches of a seeded permutation of n records, a new permutation each epoch."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.batch_size, self.device = n, batch_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = math.ceil(n / batch_size)
        self.pending: list[Tensor] = []

    def next(self) -> Tensor:
        if not self.pending:
            order = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pending = list(order.split(self.batch_size))
            self.pending.reverse()
        return self.pending.pop()


class Poisson:
    """Every one of n records independently with probability q = 1 / steps_per_epoch at each
    step (Opacus' DPDataLoader), drawn from `generator` on the records' device."""

    def __init__(self, n: int, steps_per_epoch: int, generator: torch.Generator) -> None:
        self.n, self.generator, self.steps_per_epoch = n, generator, steps_per_epoch
        self.rate = 1 / steps_per_epoch

    def next(self) -> Tensor:
        draw = torch.rand(self.n, generator=self.generator, device=self.generator.device)
        return torch.nonzero(draw < self.rate).flatten()


@dataclass
class Lane:
    """One model's progress. `rows`: its records as indices into the step's x (None: all of x);
    batches are drawn as positions into them."""

    batches: Shuffled | Poisson
    augmenter: Augmenter
    epochs: int
    rows: Tensor | None = None
    trace: LossTrace | None = None
    lookahead: Lookahead | None = None
    step: int = 0
    epochs_run: int = 0
    stopped: bool = False
    best: float = -1.0
    best_epoch: int = 0
    loss: Tensor | None = None
    trace_seconds: float = 0.0

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    @property
    def epoch(self) -> int:
        """The epoch under way, from 0."""
        return self.step // self.steps_per_epoch

    @property
    def running(self) -> bool:
        return not self.stopped and self.step < self.epochs * self.steps_per_epoch

    def records(self, positions: Tensor) -> Tensor:
        """Positions into the lane's records as indices into x."""
        return positions if self.rows is None else self.rows[positions]


class Step(Protocol):
    """What a trainer plugs into `train_lanes`: the update of its models."""

    #: bf16 autocast (on CUDA) for traces and held-out accuracy
    bf16: bool

    def train(
        self, lanes: list[Lane], batches: dict[int, Tensor], rates: dict[int, float]
    ) -> dict[int, Tensor]:
        """One optimizer step of each lane m in `batches` (positions into its records) at learning
        rate rates[m]; returns each one's mean batch loss (a scalar tensor)."""
        ...

    def forward(self, m: int) -> Callable[[Tensor], Tensor]:
        """Lane m's model in eval mode: model inputs → logits."""
        ...


def train_lanes(
    step: Step,
    lanes: list[Lane],
    cfg: TrainConfig,
    started: float,
    *,
    norm: Normalization | None = None,
    trace_on: tuple[Tensor, Tensor] | None = None,
    held_out: tuple[Tensor, Tensor] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> list[TrainReport]:
    """Run every lane to its last epoch (or its early stop) with `step`; one report per lane.

    trace_on: records whose loss is recorded before training and after every epoch (every
    train.trace_every-th and the last). held_out: records whose accuracy the report gives and,
    with train.early_stopping_patience, drives early stopping: a lane stops after that many epochs
    without a new best, keeping its last weights (as the LiRA reference code does). Lookahead
    weights are taken before the last trace row, which is the final model's. on_epoch(done, total)
    is called after every epoch of every lane. `started`: perf_counter() when training began.
    """
    patience = cfg.early_stopping_patience
    if patience is not None and held_out is None:  # before the first step
        raise MiakitError("train.early_stopping_patience needs held-out records (a test split)")

    def accuracy(m: int) -> float:
        assert held_out is not None
        return held_out_accuracy(step.forward(m), held_out, norm, step.bf16)

    def trace_row(m: int, epoch: int, stopping: bool = False) -> None:
        lane = lanes[m]
        if trace_on is None or lane.trace is None or not lane.trace.due(epoch, stopping):
            return
        tick = time.perf_counter()
        forward = step.forward(m)
        with autocast(trace_on[0].device, step.bf16):
            lane.trace.add(epoch, record_losses(forward, *trace_on, norm))
        lane.trace_seconds += time.perf_counter() - tick

    def end_of_epoch(m: int) -> None:
        lane = lanes[m]
        epoch = lane.step // lane.steps_per_epoch
        stopping = False
        if patience is not None:
            accuracy_now = accuracy(m)
            if accuracy_now > lane.best:
                lane.best, lane.best_epoch = accuracy_now, epoch
            stopping = epoch - lane.best_epoch >= patience
        if lane.lookahead is not None and (stopping or epoch == lane.epochs):
            lane.lookahead.finish()
        trace_row(m, epoch, stopping)
        lane.epochs_run, lane.stopped = epoch, stopping
        if on_epoch is not None:
            on_epoch(epoch, lane.epochs)

    for m in range(len(lanes)):
        trace_row(m, 0)
    while active := [m for m, lane in enumerate(lanes) if lane.running]:
        batches = {m: lanes[m].batches.next() for m in active}
        rates = {
            m: cfg.lr * lr_factor(cfg, lanes[m].step, lanes[m].steps_per_epoch) for m in active
        }
        losses = step.train(lanes, batches, rates)
        for m in active:
            lane = lanes[m]
            lane.step, lane.loss = lane.step + 1, losses[m]
            if lane.lookahead is not None:
                lane.lookahead.after_step(lane.step)
            if lane.step % lane.steps_per_epoch == 0:
                end_of_epoch(m)
    seconds = (time.perf_counter() - started) / len(lanes)
    return [
        TrainReport(
            seconds=seconds,
            steps=lane.step,
            final_loss=lane.loss.item() if lane.loss is not None else float("nan"),
            epochs=lane.epochs_run,
            trace=lane.trace.array() if lane.trace is not None else None,
            trace_epochs=lane.trace.epochs if lane.trace is not None else None,
            trace_seconds=lane.trace_seconds,
            held_out_accuracy=accuracy(m) if held_out is not None else None,
        )
        for m, lane in enumerate(lanes)
    ]


@torch.no_grad()
def held_out_accuracy(
    forward: Callable[[Tensor], Tensor],
    records: tuple[Tensor, Tensor],
    norm: Normalization | None,
    bf16: bool,
) -> float:
    """Share of `records` (x, y) whose top logit is their label; `forward` in eval mode."""
    x, y = records
    with autocast(x.device, bf16):
        logits = torch.cat([forward(model_inputs(chunk, norm)) for chunk in x.split(4096)])
    return (logits.argmax(-1) == y).float().mean().item()
