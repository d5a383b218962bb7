"""A user's own PyTorch module as the model: `model.arch: python:package.module:factory`.

`factory(input_shape, num_classes)` returns a fresh `torch.nn.Module` taking a batch of records
as miakit feeds them (feature vectors [B, D]; images [B, C, H, W], normalized) and returning
logits [B, num_classes]; `input_shape` is one record's stored shape (features (D,), images
(H, W, C)). miakit trains it with its own recipes (`train.*`). The module's source file is part of
every model's content hash (`ModelConfig.hash_inputs`), so editing it retrains; what it imports is
not covered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from miakit.architectures import (
    IN_MEMORY,
    check_code_allowed,
    is_in_memory,
    user_factory_path,
    user_module_file,
)
from miakit.errors import MiakitError


def user_factory(arch: str) -> Callable[..., nn.Module]:
    """The factory a `python:module:factory` arch names, its module imported, or the one a
    `memory:` arch names in this process; MiakitError naming model.arch when running code was not
    allowed (`check_code_allowed`; a `memory:` factory is the calling process's own code and needs
    no opt-in), the module or the factory is missing, the module fails to import, or a `memory:`
    factory is not in this process (another process gave it: the CLI resuming a run of
    `miakit.audit(model=...)`)."""
    if is_in_memory(arch):
        if arch not in IN_MEMORY:
            raise MiakitError(
                f"model.arch: {arch} is a model factory given to miakit.audit(model=...) in "
                "another Python process, so its models cannot be built here; resume this run "
                "from Python with miakit.audit(..., model=<the same factory>)"
            )
        return IN_MEMORY[arch]
    check_code_allowed(arch)
    module_path, name = user_factory_path(arch)
    user_module_file(arch)  # a clear error when the module is not on the path
    try:
        module = importlib.import_module(module_path)
    except Exception as exc:  # the user's code: any error while importing it
        raise MiakitError(
            f"model.arch: importing {module_path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise MiakitError(f"model.arch: {module_path} has no callable {name!r}")
    return factory


def build_user_model(arch: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """`factory(input_shape, num_classes)`; MiakitError unless it returns an nn.Module."""
    factory = user_factory(arch)
    try:
        model = factory(tuple(input_shape), num_classes)
    except Exception as exc:
        raise MiakitError(
            f"model.arch: {arch} raised {type(exc).__name__} when called with input_shape "
            f"{tuple(input_shape)} and num_classes {num_classes}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise MiakitError(
            f"model.arch: {arch} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model
