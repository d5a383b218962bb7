"""Splitting a model into a frozen part and the layers trained on top of it (transfer learning).

Two cut points:

- "features": the frozen part is everything before the final classifier, so it maps a record to
  its penultimate feature vector [N, D]; the trainable layers are only the classifier.
- "before_last_block": the frozen part stops before the last residual block (ResNet, WRN), the
  last conv group (fast net) or stage (small CNN), or the last hidden layer (MLP); the trainable
  layers are that block, what follows it, and the classifier.

The three parts share the model's modules (no copies), and head(body(frozen(x))) equals model(x)
in eval mode, so loaded weights mean the same thing either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from miakit.errors import MiakitError
from miakit.models.cnn import SmallCNN
from miakit.models.fastnet import FastNet
from miakit.models.mlp import MLP
from miakit.models.resnet import CifarResNet
from miakit.models.wrn import WideResNet

Cut = Literal["features", "before_last_block"]


@dataclass(frozen=True)
class Split:
    frozen: nn.Module  # records → what the trainable layers take
    body: nn.Module  # the trainable layers before the classifier (empty at "features")
    head: nn.Module  # the classifier: its last nn.Linear gives the logits

    @property
    def classifier(self) -> nn.Linear:
        return [m for m in self.head.modules() if isinstance(m, nn.Linear)][-1]


class Scale(nn.Module):
    """Multiplies by a constant (the fast net's 1/9 after its classifier)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


def _split_sequential(net: nn.Sequential, block: type[nn.Module], cut: Cut) -> Split:
    """A Sequential ending in [Dropout,] Linear: the head is that tail; the last block starts at
    the last layer of type `block` before the head."""
    layers = list(net)
    head_start = len(layers) - 1
    if head_start > 0 and isinstance(layers[head_start - 1], nn.Dropout):
        head_start -= 1
    body_start = head_start
    if cut == "before_last_block":
        starts = [i for i, layer in enumerate(layers[:head_start]) if isinstance(layer, block)]
        if not starts:
            raise MiakitError(
                "defences.transfer.fine_tune: 'last_block' needs a hidden layer before the "
                "classifier; give model.hidden at least one width, or use fine_tune 'none'"
            )
        body_start = starts[-1]
    return Split(
        nn.Sequential(*layers[:body_start]),
        nn.Sequential(*layers[body_start:head_start]),
        nn.Sequential(*layers[head_start:]),
    )


def _split_mlp(model: MLP, cut: Cut) -> Split:
    return _split_sequential(model.net, nn.Linear, cut)  # last block: the last hidden layer


def _split_cnn(model: SmallCNN, cut: Cut) -> Split:
    return _split_sequential(model.net, nn.Conv2d, cut)  # last block: conv, ReLU, max-pool


def _split_resnet(model: CifarResNet, cut: Cut) -> Split:
    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return _split_blocks([model.stem], model.blocks, pool, model.fc, cut)


def _split_wrn(model: WideResNet, cut: Cut) -> Split:
    tail = [model.bn, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return _split_blocks([model.stem], model.blocks, tail, model.fc, cut)


def _split_fastnet(model: FastNet, cut: Cut) -> Split:
    tail = [model.pool, nn.Flatten()]
    head = nn.Sequential(model.fc, Scale(1 / 9))
    return _split_blocks([model.stem], model.groups, tail, head, cut)


def _split_blocks(
    stem: list[nn.Module], blocks: nn.Sequential, tail: list[nn.Module], head: nn.Module, cut: Cut
) -> Split:
    """stem → blocks → tail → head, cut after all blocks or before the last one."""
    last = len(blocks) if cut == "features" else len(blocks) - 1
    return Split(
        nn.Sequential(*stem, *blocks[:last], *(tail if cut == "features" else [])),
        nn.Sequential(*blocks[last:], *(tail if cut == "before_last_block" else [])),
        head,
    )


#: model class → its split; a test fails when a registered architecture has none
SPLITTERS: dict[type[nn.Module], Callable[..., Split]] = {
    MLP: _split_mlp,
    SmallCNN: _split_cnn,
    CifarResNet: _split_resnet,
    WideResNet: _split_wrn,
    FastNet: _split_fastnet,
}


def split_model(model: nn.Module, cut: Cut) -> Split:
    """The model's frozen part, trainable body and classifier head at `cut`."""
    splitter = SPLITTERS.get(type(model))
    if splitter is None:
        raise MiakitError(f"defences.transfer: no split is known for {type(model).__name__}")
    return splitter(model, cut)


def classifier_name(model: nn.Module) -> str:
    """The state-dict prefix of the model's final classifier (its keys are `<name>.weight`, ...)."""
    classifier = split_model(model, "features").classifier
    return next(name for name, m in model.named_modules() if m is classifier)
