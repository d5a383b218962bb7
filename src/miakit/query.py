"""Querying a trained model: the logits of every pool record under the query augmentations."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from miakit.train.trainer import predict_logits


def query_logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Logits [N, A, C] with A = 1: each record as it is (the only view non-image data have)."""
    return predict_logits(model, x)[:, None, :]
