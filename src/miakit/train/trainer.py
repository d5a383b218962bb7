"""Training one model on its keep row: plain minibatch SGD/Adam, deterministic for fixed seeds on CPU.

Data stay as tensors on the training device; batches are drawn by indexing with a seeded
permutation, so no DataLoader (or its worker processes) is involved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from miakit.config import TrainConfig


@dataclass(frozen=True)
class TrainReport:
    seconds: float
    steps: int
    final_loss: float


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        from miakit.errors import MiakitError

        raise MiakitError("train.device is 'cuda' but no CUDA device is available; use 'auto'")
    return torch.device(requested)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    order_seed: int,
) -> TrainReport:
    """Train `model` in place on (x, y), already on the training device, for cfg.epochs epochs."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(order_seed)
    optimizer = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    steps, loss = 0, torch.tensor(float("nan"))
    for _ in range(cfg.epochs):
        order = torch.randperm(len(y), generator=generator).to(x.device)
        for batch in order.split(cfg.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            steps += 1
    return TrainReport(time.perf_counter() - start, steps, loss.item())


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """Logits [N, C] as float32, in eval mode."""
    model.eval()
    return torch.cat([model(chunk).float().cpu() for chunk in x.split(batch_size)]).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=-1) == labels).mean()) if len(labels) else float("nan")
