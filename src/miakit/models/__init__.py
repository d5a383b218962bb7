"""Model architectures by name; `build_model` is the one way the pipeline makes a model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from miakit.architectures import (
    REVISIONS,
    TEXT_ARCHITECTURES,
    is_hf,
    is_in_memory,
    is_sklearn,
    is_user_module,
)
from miakit.errors import MiakitError
from miakit.models.cnn import SmallCNN
from miakit.models.fastnet import FastNet
from miakit.models.gpt import GPT
from miakit.models.mlp import MLP
from miakit.models.resnet import resnet18, resnet20
from miakit.models.user import build_user_model
from miakit.models.wrn import wrn28_2, wrn40_4

#: name → constructor(input_shape, num_classes, **options); the names are
#: `miakit.architectures.ARCHITECTURES`, which the config reads without importing torch
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "resnet20": resnet20,
    "resnet18": resnet18,
    "wrn28-2": wrn28_2,
    "wrn40-4": wrn40_4,
    "fastnet": FastNet,
    "gpt": GPT,
}


#: architectures whose first layer is a convolution: they take images, not feature vectors
IMAGE_MODELS = frozenset(MODELS) - {"mlp", "gpt"}
#: architectures that take text records (token ids [L]), and only those
TEXT_MODELS = frozenset(TEXT_ARCHITECTURES)


def build_model(
    arch: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> nn.Module:
    """The model; `options` is the model config, of which each architecture takes what it has.

    One config section serves every architecture, so options an architecture lacks (an MLP's
    widths for a ResNet) are dropped; dropout asked of one without dropout is an error. A
    `python:module:factory` arch is the user's factory(input_shape, num_classes)
    (`miakit.models.user`); `sklearn` is no torch module (`miakit.models.sklearn_model`).
    """
    if is_user_module(arch) or is_in_memory(arch):
        return build_user_model(arch, input_shape, num_classes)
    if is_hf(arch):
        from miakit.models.hf import build_hf

        return build_hf(arch, num_classes, options.get("task"), options.get("lora"))
    if is_sklearn(arch):
        raise MiakitError("model.arch: sklearn estimators are built by miakit.models.sklearn_model")
    if arch not in MODELS:
        raise MiakitError(f"model.arch: unknown architecture {arch!r}; known: {', '.join(MODELS)}")
    if arch in TEXT_MODELS and len(input_shape) != 1:
        raise MiakitError(
            f"model.arch: {arch} takes text records (token ids); these have shape {input_shape}"
        )
    if arch in IMAGE_MODELS and len(input_shape) != 3:
        raise MiakitError(
            f"model.arch: {arch} takes images [H, W, C]; these records have shape {input_shape}"
        )
    accepted = inspect.signature(MODELS[arch]).parameters
    if options.get("dropout") and "dropout" not in accepted:
        raise MiakitError(f"model.dropout: {arch} has no dropout; leave model.dropout at 0")
    return MODELS[arch](
        input_shape, num_classes, **{k: v for k, v in options.items() if k in accepted}
    )


__all__ = ["IMAGE_MODELS", "MODELS", "REVISIONS", "TEXT_MODELS", "build_model"]
