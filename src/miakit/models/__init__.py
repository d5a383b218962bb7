"""Model architectures by name; `build_model` is the one way the pipeline makes a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from miakit.errors import MiakitError
from miakit.models.mlp import MLP

#: name → constructor(input_shape, num_classes, **options)
MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP}


def build_model(
    arch: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> nn.Module:
    if arch not in MODELS:
        raise MiakitError(f"model.arch: unknown architecture {arch!r}; known: {', '.join(MODELS)}")
    return MODELS[arch](input_shape, num_classes, **options)


__all__ = ["MODELS", "build_model"]
