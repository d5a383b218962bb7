"""The architectures' names and code revisions, without importing torch (the config and every
command that trains nothing read them)."""

from __future__ import annotations

#: The names `model.arch` takes; `miakit.models.MODELS` maps each to its constructor.
ARCHITECTURES = ("mlp", "cnn", "resnet20", "resnet18", "wrn28-2", "wrn40-4", "fastnet")

#: Part of every model's content hash: bump an architecture's number whenever what it computes
#: changes (layers, init), so that resumed runs retrain its models instead of reusing them.
REVISIONS: dict[str, int] = dict.fromkeys(ARCHITECTURES, 1) | {"fastnet": 2}  # 2: frozen BN scale

#: The same for the stacked trainer (train.batched), in the content hash of models it trains:
#: 2: torch.optim's SGD and Adam over the stacked parameters (rounding differs from revision 1's).
STACKED_TRAINER_REVISION = 2
