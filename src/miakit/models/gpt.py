"""miakit's tiny causal GPT for text records (token ids of `miakit.tokens`).

A decoder-only transformer as GPT-2 (Radford et al. 2019) and nanoGPT: token and learnt position
embeddings, pre-LayerNorm blocks of causal multi-head self-attention and a 4×-wide GELU MLP, a
final LayerNorm and a linear head tied to the token embedding. Small by design (2–4 layers,
width 64–256): audits train many of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from miakit import tokens
from miakit.errors import MiakitError


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )

    def forward(self, h: Tensor) -> Tensor:
        b, t, w = h.shape
        q, k, v = self.qkv(self.ln1(h)).split(w, dim=-1)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        p = self.dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        h = h + self.proj(att.transpose(1, 2).reshape(b, t, w))
        return h + self.mlp(self.ln2(h))


class GPT(nn.Module):
    """Causal LM over records [B, L] of token ids: forward returns next-token logits
    [B, L − 1, VOCAB_SIZE] float, position t predicting token t + 1 from tokens 0..t.

    input_shape: (L,), the pool's tokens per record; context: the longest sequence of tokens the
    model takes (its learnt positions; default L; a ReCaLL prefix needs more); num_classes is
    unused (a text pool's one class, `miakit.data.text`). MiakitError when width is not a
    multiple of heads or context is below L."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        layers: int = 2,
        width: int = 64,
        heads: int = 4,
        dropout: float = 0.0,
        context: int | None = None,
    ):
        super().__init__()
        if width % heads:
            raise MiakitError(f"model.width ({width}) must be a multiple of model.heads ({heads})")
        (length,) = input_shape
        if context is not None and context < length:
            raise MiakitError(
                f"model.context ({context}) must be at least the records' length in tokens "
                f"({length})"
            )
        self.context = context or length
        self.embed = nn.Embedding(tokens.VOCAB_SIZE, width)
        self.position = nn.Embedding(self.context, width)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        for name, p in self.named_parameters():  # GPT-2's initialization
            if p.ndim >= 2:
                nn.init.normal_(p, std=0.02 / (2 * layers) ** 0.5 if "proj" in name else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, x: Tensor) -> Tensor:
        inputs = x[:, :-1]
        positions = torch.arange(inputs.shape[1], device=x.device)
        h = self.embed(inputs) + self.position(positions)
        for block in self.blocks:
            h = block(h)
        return self.ln(h) @ self.embed.weight.T
