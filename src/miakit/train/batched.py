"""Training many small models at once with stacked parameters (torch.func.vmap over the models).

Each model keeps its own init (the modules passed in), its own records, data order and
augmentation draws, its own learning-rate schedule, and its own optimizer state: the result
equals training each model alone with `train_model` and the same seeds, up to float rounding
(tested). Models may have different numbers of records, hence different batch counts per epoch:
at each step only the models with a batch left take a step. Models without BatchNorm have their
batches padded to one size (padded records weigh 0); with BatchNorm, whose batch statistics
depend on the batch, models are grouped by batch size instead.

The parameters are stacked with `torch.func.stack_module_state`, one leaf [M, ...] per parameter,
and updated by torch.optim's own SGD or Adam (as `train_model`'s, with its parameter groups, in
torch's fused kernel): one optimizer per cohort of models with equal batch counts per epoch,
which always step together at one learning rate; the models are stacked cohort by cohort, so
each cohort's optimizer holds slices [k, ...] of the leaves (views: its updates are the leaves').
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from miakit.config import TrainConfig
from miakit.errors import MiakitError
from miakit.train.augment import Augmenter
from miakit.train.inputs import Normalization, autocast
from miakit.train.loop import Lane, Shuffled, TrainReport, check_options, train_lanes
from miakit.train.traces import LossTrace
from miakit.train.trainer import init_from_data, make_optimizer, mixed_loss, set_lr


@dataclass
class Cohort:
    """Models start:stop of the stack, which step together; their optimizer over `slices`."""

    start: int
    stop: int
    slices: dict[str, Tensor]
    optimizer: torch.optim.Optimizer


class StackedStep:
    """The loop's step for `train_batched`: one forward and backward pass for every lane with a
    batch (vmap over the stacked parameters), then each cohort's torch.optim step."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        x: Tensor,
        y: Tensor,
        lanes: list[Lane],
        cfg: TrainConfig,
    ) -> None:
        self.x, self.y, self.cfg = x, y, cfg
        self.bf16 = cfg.bf16
        self.base = copy.deepcopy(models[0]).to("meta")
        self.params, self.buffers = stack_module_state(list(models))
        self.exact_batches = any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.base.modules()
        )
        self.cohorts: list[Cohort] = []
        for _, cohort in itertools.groupby(range(len(lanes)), lambda m: lanes[m].steps_per_epoch):
            members = list(cohort)
            start, stop = members[0], members[-1] + 1
            slices = {
                name: leaf.detach()[start:stop]
                for name, leaf in self.params.items()
                if leaf.requires_grad
            }
            optimizer = make_optimizer(self.base, cfg, slices, fused=True)
            self.cohorts.append(Cohort(start, stop, slices, optimizer))

    def _forward(self, p: dict[str, Tensor], b: dict[str, Tensor], inp: Tensor) -> Tensor:
        return functional_call(self.base, (p, b), (inp,))

    def train(
        self, lanes: list[Lane], batches: dict[int, Tensor], rates: dict[int, float]
    ) -> dict[int, Tensor]:
        self.base.train()
        total, losses = torch.zeros((), device=self.x.device), {}
        for group in group_models(batches, self.exact_batches):
            batch = group_batch(group, batches, lanes, self.x, self.y)
            loss = group_loss(self._forward, self.params, self.buffers, group, batch, self.cfg)
            total = total + loss.sum()
            losses.update(zip(group, loss.detach(), strict=True))
        total.backward()
        for cohort in self.cohorts:
            if cohort.start not in batches:  # its models have finished
                continue
            for name, part in cohort.slices.items():
                part.grad = self.params[name].grad[cohort.start : cohort.stop]
            set_lr(cohort.optimizer, rates[cohort.start])
            cohort.optimizer.step()
        for leaf in self.params.values():
            leaf.grad = None
        return losses

    def forward(self, m: int) -> Callable[[Tensor], Tensor]:
        self.base.eval()
        one = (
            {k: v[m].detach() for k, v in self.params.items()},
            {k: v[m] for k, v in self.buffers.items()},
        )
        return lambda inp: functional_call(self.base, one, (inp,))


def train_batched(
    models: Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    rows: Sequence[Tensor],
    cfg: TrainConfig,
    order_seeds: Sequence[int],
    augment_seeds: Sequence[int | None] | None = None,
    *,
    norm: Normalization | None = None,
    trace_on: tuple[Tensor, Tensor] | None = None,
) -> list[TrainReport]:
    """Train `models` (one architecture, already on x's device) in place, model m on x[rows[m]].

    Same contract per model as `train_model(models[m], x[rows[m]], y[rows[m]], cfg,
    order_seeds[m], augment_seed=augment_seeds[m], norm=norm, trace_on=trace_on)`; the options
    it does not support are in `loop.REFUSED["stacked"]` (MiakitError), as is a mix of
    architectures. Reports in the order of `models`.
    """
    started = time.perf_counter()
    augment_seeds = augment_seeds or [None] * len(models)
    check_batchable(models, cfg)
    device = x.device
    for model, r in zip(models, rows, strict=True):
        init_from_data(model, x[r], norm)
    lanes = [
        Lane(
            batches=Shuffled(len(r), cfg.batch_size, seed, device),
            augmenter=Augmenter(cfg.augment, norm, device, aug_seed, len(r)),
            epochs=cfg.epochs,
            rows=r,
            trace=LossTrace(cfg.trace_every, cfg.epochs) if trace_on is not None else None,
        )
        for r, seed, aug_seed in zip(rows, order_seeds, augment_seeds, strict=True)
    ]
    # stacked cohort by cohort: models with equal batch counts per epoch next to each other
    order = sorted(range(len(models)), key=lambda m: lanes[m].steps_per_epoch)
    stacked = [models[m] for m in order]
    step = StackedStep(stacked, x, y, [lanes[m] for m in order], cfg)
    reports = train_lanes(
        step, [lanes[m] for m in order], cfg, started, norm=norm, trace_on=trace_on
    )
    write_back(stacked, step.params, step.buffers)
    return [reports[order.index(m)] for m in range(len(models))]


def check_batchable(models: Sequence[nn.Module], cfg: TrainConfig) -> None:
    check_options("stacked", cfg, models[0])
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
    if any(s != shapes[0] for s in shapes):
        raise MiakitError("train.batched needs models of one architecture")


def group_models(batches: dict[int, Tensor], exact_batches: bool) -> list[list[int]]:
    """Models that run in one vmap call: all of them, or those with equal batch sizes."""
    if not exact_batches:
        return [list(batches)]
    sizes: dict[int, list[int]] = {}
    for m, batch in batches.items():
        sizes.setdefault(len(batch), []).append(m)
    return list(sizes.values())


@dataclass
class GroupBatch:
    """A group's batches stacked [G, B, ...], padded to one size B; `weights` 0 on padding."""

    x: Tensor
    y: Tensor
    y_mix: Tensor
    lam: Tensor
    weights: Tensor


def group_batch(
    group: list[int], positions: dict[int, Tensor], lanes: list[Lane], x: Tensor, y: Tensor
) -> GroupBatch:
    """Gather and augment the group's batches (`positions`: each model's batch as indices into
    its lane's rows); each model's augmentation uses its own generator."""
    records = {m: lanes[m].records(positions[m]) for m in group}
    counts = torch.tensor([len(records[m]) for m in group], device=x.device)
    size = int(counts.max())
    index = torch.stack([pad(records[m], size) for m in group])
    weights = (torch.arange(size, device=x.device)[None, :] < counts[:, None]).float()
    if not lanes[group[0]].augmenter.active:  # no random draws: convert the whole group at once
        batch = lanes[group[0]].augmenter(x[index.flatten()], y[index.flatten()])
        inputs = batch.x.unflatten(0, index.shape)
        return GroupBatch(inputs, y[index], y[index], torch.ones(len(group), 1), weights)
    batches = [
        lanes[m].augmenter(x[records[m]], y[records[m]], positions[m], lanes[m].epoch)
        for m in group
    ]
    return GroupBatch(
        torch.stack([pad(b.x, size) for b in batches]),
        torch.stack([pad(b.y, size) for b in batches]),
        torch.stack([pad(b.y_mix, size) for b in batches]),
        torch.tensor([[b.lam] for b in batches]),
        weights,
    )


def group_loss(
    forward: Callable[[dict[str, Tensor], dict[str, Tensor], Tensor], Tensor],
    params: dict[str, Tensor],
    buffers: dict[str, Tensor],
    group: list[int],
    batch: GroupBatch,
    cfg: TrainConfig,
) -> Tensor:
    """Each of the group's models' mean batch loss [G] (padded records weigh 0)."""
    everyone = len(group) == next(iter(params.values())).shape[0]
    index = torch.tensor(group, device=batch.x.device)
    p = params if everyone else {k: v[index] for k, v in params.items()}
    b = buffers if everyone else {k: v[index] for k, v in buffers.items()}
    with autocast(batch.x.device, cfg.bf16):
        logits = vmap(forward)(p, b, batch.x)
    lam = 1.0 if bool((batch.lam == 1).all()) else batch.lam.to(logits.device)
    loss = mixed_loss(logits, batch.y, batch.y_mix, lam, cfg.label_smoothing)
    if not everyone:
        with torch.no_grad():
            for k, v in b.items():
                buffers[k][index] = v
    return (loss * batch.weights).sum(1) / batch.weights.sum(1)


def pad(t: Tensor, size: int) -> Tensor:
    """Rows appended (copies of the first) up to `size`; their weight in the loss is 0."""
    if len(t) == size:
        return t
    return torch.cat([t, t[:1].expand(size - len(t), *t.shape[1:])])


@torch.no_grad()
def write_back(
    models: Sequence[nn.Module], params: dict[str, Tensor], buffers: dict[str, Tensor]
) -> None:
    for m, model in enumerate(models):
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            tensor.copy_((params | buffers)[name][m])
