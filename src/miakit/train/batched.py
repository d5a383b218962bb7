"""Training many small models at once with stacked parameters (torch.func.vmap over the models).

Each model keeps its own init (the modules passed in), its own records, data order and
augmentation draws, its own learning-rate schedule, and its own optimizer state: the result
equals training each model alone with `train_model` and the same seeds, up to float rounding
(tested). Models may have different numbers of records, hence different batch counts per epoch:
at each step only the models with a batch left take a step. Models without BatchNorm have their
batches padded to one size (padded records weigh 0); with BatchNorm, whose batch statistics
depend on the batch, models are grouped by batch size instead.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from miakit.config import TrainConfig
from miakit.errors import MiakitError
from miakit.train.augment import Augmenter
from miakit.train.inputs import Normalization, autocast
from miakit.train.schedule import lr_factor
from miakit.train.traces import LossTrace, record_losses
from miakit.train.trainer import (
    TrainReport,
    init_from_data,
    mixed_loss,
    norm_bias_names,
    rate_and_decay,
)

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which train_model uses


@dataclass
class Lane:
    """One model's progress: its records, generators, and where it is in its epochs."""

    rows: Tensor
    order: torch.Generator
    augmenter: Augmenter
    steps_per_epoch: int
    trace: LossTrace
    step: int = 0
    pending: list[Tensor] = field(default_factory=list)
    last_loss: float = float("nan")


class StackedParameters:
    """Every model's parameters stacked by name, one leaf [M, ...] per parameter of the
    architecture: the forward pass uses them as they are (vmap over the first axis), and the
    optimizer updates all models in a few large operations."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        named = [dict(m.named_parameters()) for m in models]
        self.tensors = {
            name: torch.stack([n[name].detach() for n in named]).requires_grad_(p.requires_grad)
            for name, p in named[0].items()
        }

    def leaves(self) -> list[Tensor]:
        """The parameters that train (a frozen one, like the fast net's stem, is left out)."""
        return [t for t in self.tensors.values() if t.requires_grad]

    def leaf_names(self) -> list[str]:
        return [name for name, t in self.tensors.items() if t.requires_grad]


class StackedOptimizer:
    """SGD (momentum, Nesterov) or Adam over stacked parameters [M, ...] with torch.optim's update
    rules, a learning rate per model, and updates only for the models that took a step.
    `rates_and_decays`: each parameter's lr scale and weight decay (trainer.rate_and_decay)."""

    def __init__(
        self, cfg: TrainConfig, params: list[Tensor], rates_and_decays: list[tuple[float, float]]
    ) -> None:
        self.cfg = cfg
        self.scale = [scale for scale, _ in rates_and_decays]
        self.decay = [decay for _, decay in rates_and_decays]
        #: torch's fused Adam takes one rate for every parameter: no per-parameter scales
        self.fusable = cfg.optimizer == "adam" and all(scale == 1.0 for scale in self.scale)
        self.steps = torch.zeros(params[0].shape[0], device=params[0].device)
        slots = {"sgd": 1 if cfg.momentum else 0, "adam": 2}[cfg.optimizer]
        self.state = [[torch.zeros_like(p) for p in params] for _ in range(slots)]

    @torch.no_grad()
    def step(self, params: list[Tensor], lr: Tensor, active: list[int]) -> None:
        """One step for models `active` (lr [M] indexed by model); gradients are in p.grad."""
        grads = [p.grad for p in params]
        for p in params:
            p.grad = None
        if len(active) == len(self.steps):
            self.steps += 1
            if self.fusable and bool((lr == lr[0]).all()):
                self._fused_adam(params, grads, float(lr[0]))
                return
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                state = [s[i] for s in self.state]
                rate = _per_model(lr, p) * self.scale[i]
                self._update(p, g, state, rate, self.steps, self.decay[i])
            return
        index = torch.tensor(active, device=lr.device)
        self.steps[index] += 1
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            sub, sub_state = p[index], [s[i][index] for s in self.state]
            rate, steps = _per_model(lr[index], p) * self.scale[i], self.steps[index]
            self._update(sub, g[index], sub_state, rate, steps, self.decay[i])
            p[index] = sub
            for s, new in zip(self.state, sub_state, strict=True):
                s[i][index] = new

    def _fused_adam(self, params: list[Tensor], grads: list[Tensor], lr: float) -> None:
        """Every model at the same step with the same rate (the common case: equal keep rows):
        torch's fused Adam kernel, the one torch.optim.Adam(fused=True) runs, in one pass."""
        (beta1, beta2), (first, second) = ADAM_BETAS, self.state
        for decay in set(self.decay):
            group = [i for i, d in enumerate(self.decay) if d == decay]
            torch._fused_adam_(
                [params[i] for i in group],
                [grads[i] for i in group],
                [first[i] for i in group],
                [second[i] for i in group],
                [],
                [self.steps[0].clone() for _ in group],
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=decay,
                eps=ADAM_EPS,
                amsgrad=False,
                maximize=False,
            )

    def _update(
        self,
        p: Tensor,
        grad: Tensor,
        state: list[Tensor],
        lr: Tensor,
        steps: Tensor,
        weight_decay: float,
    ) -> None:
        """In place, as torch.optim.SGD / Adam (default betas and eps) do for each model."""
        cfg = self.cfg
        if weight_decay:
            grad = grad.add(p, alpha=weight_decay)
        if cfg.optimizer == "sgd":
            if state:
                buf = state[0].mul_(cfg.momentum).add_(grad)
                grad = grad.add(buf, alpha=cfg.momentum) if cfg.nesterov else buf
            p.sub_(lr * grad)
            return
        (beta1, beta2), (first, second) = ADAM_BETAS, state
        steps = _per_model(steps, p)
        first.lerp_(grad, 1 - beta1)
        second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = second.sqrt().div_((1 - beta2**steps).sqrt()).add_(ADAM_EPS)
        p.addcdiv_(first, denom.div_(lr / (1 - beta1**steps)), value=-1)  # p -= step · m / denom


def _per_model(values: Tensor, like: Tensor) -> Tensor:
    """Values [M] shaped to broadcast over stacked parameters [M, ...]."""
    return values.view(-1, *[1] * (like.ndim - 1))


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
    order_seeds[m], augment_seed=augment_seeds[m], norm=norm, trace_on=trace_on)`. Early
    stopping and dropout are not supported: both would make the models' paths diverge from
    training alone (dropout draws cannot follow the per-model streams under vmap); nor is
    lookahead, which the fast net's recipe (not a batched one) uses.
    """
    start = time.perf_counter()
    augment_seeds = augment_seeds or [None] * len(models)
    check_batchable(models, cfg)
    device = x.device
    base = copy.deepcopy(models[0]).to("meta")
    for model, r in zip(models, rows, strict=True):
        init_from_data(model, x[r], norm)
    stacked = StackedParameters(models)
    buffers = {
        name: torch.stack([m.get_buffer(name) for m in models])
        for name, _ in models[0].named_buffers()
    }
    exact_batches = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in base.modules())
    norm_biases = norm_bias_names(base)
    optimizer = StackedOptimizer(
        cfg,
        stacked.leaves(),
        [
            rate_and_decay(cfg, name, base.get_parameter(name), norm_biases)
            for name in stacked.leaf_names()
        ],
    )
    lanes = [
        Lane(
            rows=r,
            order=torch.Generator().manual_seed(seed),
            augmenter=Augmenter(cfg.augment, norm, device, aug_seed, len(r)),
            steps_per_epoch=math.ceil(len(r) / cfg.batch_size),
            trace=LossTrace(cfg.trace_every, cfg.epochs),
        )
        for r, seed, aug_seed in zip(rows, order_seeds, augment_seeds, strict=True)
    ]
    total = [cfg.epochs * lane.steps_per_epoch for lane in lanes]

    def trace_row(m: int) -> None:
        epoch = lanes[m].step // lanes[m].steps_per_epoch
        if trace_on is None or not lanes[m].trace.due(epoch):
            return
        base.eval()
        one = (
            {k: v[m].detach() for k, v in stacked.tensors.items()},
            {k: v[m] for k, v in buffers.items()},
        )
        with torch.no_grad(), autocast(device, cfg.bf16):
            lanes[m].trace.add(
                epoch,
                record_losses(lambda inp: functional_call(base, one, (inp,)), *trace_on, norm),
            )
        base.train()

    def forward(p: dict[str, Tensor], b: dict[str, Tensor], inp: Tensor) -> Tensor:
        return functional_call(base, (p, b), (inp,))

    for m in range(len(lanes)):
        trace_row(m)
    base.train()
    while True:
        active = [m for m, lane in enumerate(lanes) if lane.step < total[m]]
        if not active:
            break
        positions = {m: next_positions(lanes[m], cfg.batch_size, device) for m in active}
        loss, params = torch.zeros((), device=device), stacked.tensors
        for group in group_models(positions, exact_batches):
            batch = group_batch(group, positions, lanes, x, y)
            loss = loss + group_loss(forward, params, buffers, group, batch, cfg)
        loss.backward()
        rates = [cfg.lr * lr_factor(cfg, lane.step, lane.steps_per_epoch) for lane in lanes]
        optimizer.step(stacked.leaves(), torch.tensor(rates, device=device), active)
        for m in active:
            lanes[m].step += 1
            if lanes[m].step % lanes[m].steps_per_epoch == 0:
                trace_row(m)
    write_back(models, stacked.tensors, buffers)
    seconds = time.perf_counter() - start
    return [
        TrainReport(
            seconds=seconds / len(models),
            steps=lane.step,
            final_loss=float("nan"),
            epochs=cfg.epochs,
            trace=lane.trace.array() if trace_on is not None else None,
            trace_epochs=lane.trace.epochs if trace_on is not None else None,
        )
        for lane in lanes
    ]


def check_batchable(models: Sequence[nn.Module], cfg: TrainConfig) -> None:
    if cfg.early_stopping_patience is not None:
        raise MiakitError("train.batched does not support train.early_stopping_patience")
    if cfg.lookahead:
        raise MiakitError("train.batched does not support train.lookahead")
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in models[0].modules()):
        raise MiakitError("train.batched does not support dropout; set model.dropout to 0")
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
    if any(s != shapes[0] for s in shapes):
        raise MiakitError("train.batched needs models of one architecture")


def next_positions(lane: Lane, batch_size: int, device: torch.device) -> Tensor:
    """The lane's next batch as indices into its rows, drawing a new epoch's order when it has
    none left."""
    if not lane.pending:
        order = torch.randperm(len(lane.rows), generator=lane.order).to(device)
        lane.pending = list(order.split(batch_size))
        lane.pending.reverse()
    return lane.pending.pop()


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
    records = {m: lanes[m].rows[positions[m]] for m in group}
    counts = torch.tensor([len(records[m]) for m in group], device=x.device)
    size = int(counts.max())
    index = torch.stack([pad(records[m], size) for m in group])
    weights = (torch.arange(size, device=x.device)[None, :] < counts[:, None]).float()
    if not lanes[group[0]].augmenter.active:  # no random draws: convert the whole group at once
        batch = lanes[group[0]].augmenter(x[index.flatten()], y[index.flatten()])
        inputs = batch.x.unflatten(0, index.shape)
        return GroupBatch(inputs, y[index], y[index], torch.ones(len(group), 1), weights)
    batches = [
        lanes[m].augmenter(
            x[records[m]], y[records[m]], positions[m], lanes[m].step // lanes[m].steps_per_epoch
        )
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
    """Sum over the group's models of each one's mean batch loss (padded records weigh 0)."""
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
    return ((loss * batch.weights).sum(1) / batch.weights.sum(1)).sum()


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
