"""Training a causal language model (model.arch gpt) on its keep row's text records.

The loop is `loop.train_lanes`, as for every trainer; only the step differs: `LMStep` takes a
batch of token ids [B, L] and minimizes the mean next-token cross-entropy over the real targets
(PAD targets after each record's EOS are masked out). No augmentation, loss traces or held-out
accuracy for text records (`validate.check_text` refuses them before anything trains).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from miakit import tokens
from miakit.config import TrainConfig
from miakit.train.augment import Augmenter
from miakit.train.loop import Lane, Shuffled, TrainReport, check_options, train_lanes
from miakit.train.trainer import make_optimizer, prepare_model, set_lr


def token_nll(logits: Tensor, x: Tensor, pad: int = tokens.PAD) -> Tensor:
    """Next-token negative log-likelihood [B, L − 1] of records x [B, L] under logits
    [B, L − 1, V] (nats; 0 at padding targets, id `pad`)."""
    targets = x[:, 1:]
    nll = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), reduction="none", ignore_index=pad
    )
    return nll.view(targets.shape)


class LMStep:
    """One causal LM and torch.optim's SGD or Adam: the step of `train_lm`."""

    def __init__(self, model: nn.Module, x: Tensor, cfg: TrainConfig, pad: int) -> None:
        self.model, self.x, self.cfg, self.pad = model, x, cfg, pad
        self.bf16 = cfg.bf16
        self.net = prepare_model(model, cfg, x.device)
        self.optimizer = make_optimizer(model, cfg)

    def train(
        self, lanes: list[Lane], batches: dict[int, Tensor], rates: dict[int, float]
    ) -> dict[int, Tensor]:
        ((m, positions),) = batches.items()
        self.model.train()
        set_lr(self.optimizer, rates[m])
        batch = self.x[positions]
        real = (batch[:, 1:] != self.pad).sum()
        loss = token_nll(self.net(batch), batch, self.pad).sum() / real.clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {m: loss.detach()}

    def forward(self, m: int) -> Callable[[Tensor], Tensor]:
        self.model.eval()
        return self.net


def train_lm(
    model: nn.Module,
    x: Tensor,
    cfg: TrainConfig,
    order_seed: int,
    *,
    on_epoch: Callable[[int, int], None] | None = None,
    pad: int = tokens.PAD,
) -> TrainReport:
    """Train `model` in place on the token ids x [n, L] (on the training device) with
    `loop.train_lanes` and an `LMStep`: batches of a permutation drawn from `order_seed` each
    epoch; the report's final_loss is the last batch's mean token NLL (nats). `pad`: the
    padding id (the pool's; miakit's byte tokenizer's PAD by default), masked out."""
    check_options("plain", cfg, model)
    started = time.perf_counter()
    augmenter = Augmenter(cfg.augment, None, x.device, None, len(x))
    lane = Lane(Shuffled(len(x), cfg.batch_size, order_seed, x.device), augmenter, cfg.epochs)
    (report,) = train_lanes(LMStep(model, x, cfg, pad), [lane], cfg, started, on_epoch=on_epoch)
    return report
