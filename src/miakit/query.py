"""Querying a trained model: the logits of every pool record under the query augmentations.

A ∈ {1, 2, 18, 50}, in the LiRA reference code's order (Carlini et al. 2022, inference.py): for
each of (the image, its horizontal flip), reflect-pad by s pixels and take every crop at offset
(dy, dx), dy and dx each running 0..2s, dy outer. A = 1 is the record as it is; 2 adds the flip
(s = 0); 18 and 50 are s = 1 and 2. The unshifted, unflipped view is view `identity_view(A)`.

BatchNorm runs in eval mode by default. `batchnorm="train"` uses batch statistics as the
reference code does (`training=True`): each view of each chunk of CHUNK records is one batch,
and the model's running statistics are left as they were.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from miakit.errors import MiakitError
from miakit.tokens import PAD, RECALL_STAT, TOKEN_STATS, lowercase, sequence_logits
from miakit.train.inputs import Normalization, is_images, model_inputs
from miakit.views import SHIFTS, identity_view  # noqa: F401 (identity_view: for callers)

CHUNK = 5000  # records per batch, as the reference code's inference


def check_views(x: Tensor, augmentations: int) -> None:
    """Stop unless the A views can be taken of the stored records x."""
    if augmentations not in SHIFTS:
        raise MiakitError(
            f"query.augmentations must be one of {sorted(SHIFTS)}, not {augmentations}"
        )
    if augmentations > 1 and not is_images(x):
        raise MiakitError("query.augmentations > 1 needs images; these records are features")


def views(x: Tensor, augmentations: int) -> Iterator[Tensor]:
    """The A views of a batch of images [B, C, H, W], in the reference order."""
    shift = SHIFTS[augmentations]
    if shift is None:
        yield x
        return
    _, _, h, w = x.shape
    for image in (x, x.flip(3)):
        padded = F.pad(image, (shift,) * 4, mode="reflect") if shift else image
        for dy in range(2 * shift + 1):
            for dx in range(2 * shift + 1):
                yield padded[:, :, dy : dy + h, dx : dx + w]


@contextmanager
def batchnorm_mode(model: nn.Module, mode: Literal["eval", "train"]) -> Iterator[None]:
    """The model in eval mode, BatchNorm layers in `mode`; running statistics restored after."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
    for m in norms:
        m.train(mode == "train")
    try:
        yield
    finally:
        for m, state in zip(norms, saved, strict=True):
            m.load_state_dict(state)
            m.eval()


@torch.no_grad()
def query_logits(
    model: nn.Module,
    x: Tensor,
    augmentations: int = 1,
    *,
    norm: Normalization | None = None,
    batchnorm: Literal["eval", "train"] = "eval",
) -> np.ndarray:
    """Logits [N, A, C] float32 of every record of x under the A query augmentations."""
    check_views(x, augmentations)
    out = []
    with batchnorm_mode(model, batchnorm):
        for chunk in x.split(CHUNK):
            inputs = model_inputs(chunk, norm)
            logits = [model(view).float() for view in views(inputs, augmentations)]
            out.append(torch.stack(logits, 1).cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def query_tokens(
    model: nn.Module,
    x: Tensor,
    chunk: int = 256,
    prefix: Tensor | None = None,
    *,
    pad: int = PAD,
    lower: Tensor | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A causal LM's outputs on text records x [N, L] (token ids, `miakit.tokens`), in eval mode.

    Returns (logits [N, 1, 2] float32, {name: [N, L − 1] float32} of TOKEN_STATS; the last, the
    log-probs of the lowercased records, costs a second forward pass). With a ReCaLL prefix
    (token ids [K], `miakit.tokens.encode_prefix`), a third pass runs on each record preceded by
    the prefix and RECALL_STAT holds log p of the record's tokens 1..L − 1 given the prefix and
    the record's tokens before them (Xie et al. 2024's LL(x | P), token by token). Never the
    full vocabulary's logits: O(N · L) numbers per model. The logits are the sequence signal
    every logit-based attack reads: the two-class view [log p̄, log(1 − p̄)] of p̄ = exp(mean
    token log p) over the record's real targets (EOS included), so that with label 0 the loss
    transform is the mean token NLL, true_prob is p̄ and LiRA's log-odds φ = log p̄ − log(1 − p̄)
    (as ML Privacy Meter's LLM signal exp(−loss); `miakit.tokens.sequence_logits`, log p̄
    capped at its MAX_MEAN_LOGPROB).

    pad: the padding id (targets equal to it are masked, NaN); lower: the lowercased records'
    token ids [N, L] with their own padding (another tokenizer's: `Pool.x_lower`), by default
    `miakit.tokens.lowercase` of x.
    """
    model.eval()
    names = (*TOKEN_STATS, RECALL_STAT) if prefix is not None else TOKEN_STATS
    stats: dict[str, list[Tensor]] = {name: [] for name in names}
    means = []
    if lower is None:
        lower = torch.from_numpy(lowercase(x.cpu().numpy())).to(x.device)
    for part, part_lower in zip(x.split(chunk), lower.split(chunk), strict=True):
        logp = torch.log_softmax(model(part).double(), dim=-1)  # [B, L - 1, V]
        targets = part[:, 1:]
        real = targets != pad
        actual = _gathered(logp, targets)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        sigma = ((p * (logp - mu.unsqueeze(-1)) ** 2).sum(-1)).sqrt()
        logp_lower = torch.log_softmax(model(part_lower).double(), dim=-1)
        actual_lower = _gathered(logp_lower, part_lower[:, 1:])
        real_lower = part_lower[:, 1:] != pad
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=part.device)
        values: tuple[Tensor, ...] = (actual, mu, sigma, actual_lower)
        masks: tuple[Tensor, ...] = (real, real, real, real_lower)
        if prefix is not None:
            values += (_conditional_logprobs(model, prefix, part),)
            masks += (real,)
        for name, value, mask in zip(names, values, masks, strict=True):
            stats[name].append(torch.where(mask, value, nan).float().cpu())
        means.append((torch.where(real, actual, 0.0).sum(1) / real.sum(1)).cpu())
    logits = sequence_logits(torch.cat(means).numpy()).astype(np.float32)
    return logits, {k: torch.cat(v).numpy() for k, v in stats.items()}


def _conditional_logprobs(model: nn.Module, prefix: Tensor, part: Tensor) -> Tensor:
    """log p [B, L − 1] float64 of each record's tokens 1..L − 1 of `part` [B, L] when the
    prefix [K] precedes the record: the model's outputs at positions K..K + L − 2."""
    joined = torch.cat([prefix.to(part.device).expand(len(part), -1), part], dim=1)
    logp = torch.log_softmax(model(joined)[:, len(prefix) :].double(), dim=-1)
    return _gathered(logp, part[:, 1:])


def _gathered(logp: Tensor, targets: Tensor) -> Tensor:
    """log p [B, T] of each target id [B, T] under logp [B, T, V]; a padding id outside the
    vocabulary (`miakit.data.text.HF_PAD`) reads token 0's, which the caller masks."""
    return logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)


#: tokens per forward pass of `log_perplexity` (its float64 log-softmax holds them × vocabulary)
CHUNK_TOKENS = 1 << 16


@torch.no_grad()
def log_perplexity(
    model: nn.Module, x: Tensor, chunk: int | None = None, *, pad: int = PAD
) -> np.ndarray:
    """The Secret Sharer's log-perplexity (Carlini et al. 2019) of each record x [N, L] (token
    ids) under a causal LM, in eval mode: float64 [N], −Σ_t log2 p(x_t | x_<t) in bits over
    the record's real next tokens (EOS included, padding `pad` excluded). chunk: records per
    forward pass (default: CHUNK_TOKENS tokens' worth)."""
    model.eval()
    out = []
    for part in x.split(chunk or max(1, CHUNK_TOKENS // x.shape[1])):
        logp = torch.log_softmax(model(part).double(), dim=-1)
        targets = part[:, 1:]
        actual = _gathered(logp, targets)
        out.append(-(torch.where(targets != pad, actual, 0.0).sum(1) / math.log(2)).cpu())
    return torch.cat(out).numpy()
