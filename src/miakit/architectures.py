"""The architectures' names and code revisions, without importing torch (the config and every
command that trains nothing read them).

`model.arch` takes one of three forms:
- a built-in network's name (`ARCHITECTURES`, built by `miakit.models`);
- `sklearn`: a scikit-learn-compatible estimator named by `model.estimator` (an import path under
  one of `ESTIMATOR_MODULES`), trained and queried by `miakit.models.sklearn_model`;
- `python:package.module:factory`: the user's own PyTorch module, `factory(input_shape,
  num_classes) -> nn.Module` (`miakit.models.user`);
- `memory:name@hash`: such a factory given to `miakit.audit(model=...)` as a Python object, in
  the process that runs the audit (`register_factory`). The hash is of its source (else its
  code), so run.yaml records which code trained the models and an edited factory retrains them;
  another process (the CLI resuming the run) does not have it and refuses to build its models.

A `python:` architecture imports and runs the user's code, which is right for one's own config and
wrong for a received one: it runs only with an opt-in given outside the config file (`--allow-code`,
`--set execution.allow_code=true`, or the environment variable MIAKIT_ALLOW_CODE=1), never stored
in run.yaml, so a resumed or received run needs it again (`check_code_allowed`). Finding the
module's file for its content hash imports nothing.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from miakit.errors import MiakitError
from miakit.estimators import FITTED_PARTS

#: The built-in names `model.arch` takes; `miakit.models.MODELS` maps each to its constructor.
ARCHITECTURES = ("mlp", "cnn", "resnet20", "resnet18", "wrn28-2", "wrn40-4", "fastnet", "gpt")

#: The built-in architectures that take text records (causal language models), and only those.
TEXT_ARCHITECTURES = ("gpt",)

#: Part of every model's content hash: bump an architecture's number whenever what it computes
#: changes (layers, init), so that resumed runs retrain its models instead of reusing them.
REVISIONS: dict[str, int] = dict.fromkeys(ARCHITECTURES, 1) | {"fastnet": 2}  # 2: frozen BN scale

#: `model.arch` for a scikit-learn-compatible estimator (`model.estimator`, `model.params`).
SKLEARN = "sklearn"
#: The prefix of `model.arch` for a user's module: `python:package.module:factory`.
USER_PREFIX = "python:"
#: The top-level packages `model.estimator` may name a class in (the config names code to run,
#: so it is kept to these, and to the classes of `miakit.estimators.FITTED_PARTS`,
#: whose saved files miakit can load; xgboost and lightgbm wait for their exact types).
ESTIMATOR_MODULES = ("sklearn",)

_USER_ARCH = re.compile(r"python:([A-Za-z_][\w.]*):([A-Za-z_]\w*)")

#: The prefix of `model.arch` for a Hugging Face transformers model: `hf:<local folder or hub id>`
#: (`miakit.models.hf`), fine-tuned as model.task says.
HF_PREFIX = "hf:"

#: The prefix of `model.arch` for a factory given in memory: `memory:name@hash`.
MEMORY_PREFIX = "memory:"
_MEMORY_ARCH = re.compile(r"memory:([\w.<>-]+)@([0-9a-f]{16})")
#: The factories given in memory to this process, by their `memory:` arch.
IN_MEMORY: dict[str, Callable[..., Any]] = {}


def is_sklearn(arch: str) -> bool:
    return arch == SKLEARN


def is_hf(arch: str) -> bool:
    return arch.startswith(HF_PREFIX)


def hf_source(arch: str) -> str:
    """The local folder or hub id of an `hf:` arch."""
    return arch[len(HF_PREFIX) :]


def is_user_module(arch: str) -> bool:
    return arch.startswith(USER_PREFIX)


def is_in_memory(arch: str) -> bool:
    return arch.startswith(MEMORY_PREFIX)


def register_factory(factory: Callable[..., Any]) -> str:
    """The `memory:name@hash` arch of a factory(input_shape, num_classes) given as a Python
    object, registered in this process (`IN_MEMORY`). The hash (16 hex digits of SHA-256) is of
    the factory's source text where Python has it (files, notebooks), else of its compiled code
    without file names and line numbers, with its default arguments; what it reads from outside
    (globals, closures, imports) is not covered."""
    if not callable(factory):
        raise MiakitError(f"model: expected a factory(input_shape, num_classes), got {factory!r}")
    function = factory if inspect.isfunction(factory) else type(factory).__call__
    try:
        identity = inspect.getsource(function).encode()
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        if code is None:
            raise MiakitError(
                f"model: cannot read the code of {factory!r}; give a function"
            ) from None
        identity = code.co_code + repr(code.co_consts).encode() + repr(code.co_names).encode()
    identity += repr(getattr(function, "__defaults__", None)).encode()
    name = re.sub(r"[^\w.<>-]", "_", getattr(factory, "__qualname__", type(factory).__name__))
    arch = f"{MEMORY_PREFIX}{name}@{hashlib.sha256(identity).hexdigest()[:16]}"
    IN_MEMORY[arch] = factory
    return arch


def check_arch_name(arch: str) -> str:
    """`arch` when it has one of the four forms; else ValueError listing them (the config turns
    it into an error naming model.arch). Nothing is imported."""
    if (
        arch in ARCHITECTURES
        or arch == SKLEARN
        or _USER_ARCH.fullmatch(arch)
        or _MEMORY_ARCH.fullmatch(arch)
        or (is_hf(arch) and hf_source(arch).strip())
    ):
        return arch
    raise ValueError(
        f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}, {SKLEARN} (with "
        f"model.estimator), {USER_PREFIX}package.module:factory (your own torch module), or "
        f"{HF_PREFIX}<folder or hub id> (a transformers model, with model.task)"
    )


#: The environment variable that allows code a config names to run (`1`); `allowing_code` sets it
#: for a command given the opt-in, so worker processes it starts inherit it.
ALLOW_CODE_ENV = "MIAKIT_ALLOW_CODE"


def code_allowed() -> bool:
    return os.environ.get(ALLOW_CODE_ENV, "").strip().lower() in {"1", "true", "yes"}


@contextmanager
def allowing_code(allow: bool) -> Iterator[None]:
    """Allow code a config names to run while the block runs, when `allow` (the command's
    --allow-code or execution.allow_code); otherwise change nothing."""
    if not allow or code_allowed():
        yield
        return
    os.environ[ALLOW_CODE_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(ALLOW_CODE_ENV, None)


def check_code_allowed(arch: str) -> None:
    """MiakitError, in one line naming model.arch, when `arch` names the user's code and running
    code was not allowed (`allowing_code`, or MIAKIT_ALLOW_CODE=1)."""
    if is_user_module(arch) and not code_allowed():
        raise MiakitError(
            f"model.arch: {arch!r} imports and runs Python code, which a received config or run "
            "must not do; for your own code, allow it with --allow-code, "
            f"{ALLOW_CODE_ENV}=1 or (audit) --set execution.allow_code=true, never in a config file"
        )


def user_factory_path(arch: str) -> tuple[str, str]:
    """(module path, factory name) of a `python:module:factory` arch."""
    match = _USER_ARCH.fullmatch(arch)
    if match is None:
        raise MiakitError(f"model.arch: {arch!r} is not of the form python:package.module:factory")
    return match.group(1), match.group(2)


def _find_spec(module: str) -> importlib.machinery.ModuleSpec | None:
    """importlib.util.find_spec without importing the parent packages: each part is looked up
    by the import system's finders in its parent's search locations, and nothing is executed."""
    spec, search = None, None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        loaded = sys.modules.get(name)
        if loaded is not None and getattr(loaded, "__spec__", None) is not None:
            spec = loaded.__spec__
        else:
            finders = [f for f in sys.meta_path if hasattr(f, "find_spec")]
            spec = next((s for f in finders if (s := f.find_spec(name, search)) is not None), None)
        if spec is None:
            return None
        search = spec.submodule_search_locations
        if search is None and i < len(parts) - 1:
            return None  # not a package: it has no submodules
    return spec


def user_module_file(arch: str) -> Path:
    """The source file of a `python:module:factory` arch's module, found without running it or
    its parent packages; MiakitError when it cannot be found."""
    module, _ = user_factory_path(arch)
    try:
        spec = _find_spec(module)
    except (ImportError, ValueError) as exc:
        raise MiakitError(f"model.arch: cannot find module {module!r} ({exc})") from exc
    if spec is None or spec.origin is None or not Path(spec.origin).is_file():
        raise MiakitError(
            f"model.arch: no module {module!r} on the Python path (sys.path); install it or "
            "run miakit from the folder that holds it"
        )
    return Path(spec.origin)


#: What each built-in architecture is, for `miakit models list`.
DESCRIPTIONS = {
    "mlp": "fully connected net for feature vectors (model.hidden widths, activation, dropout)",
    "cnn": "small CNN: two conv layers and a linear head",
    "resnet20": "ResNet-20 (CIFAR)",
    "resnet18": "ResNet-18 with the CIFAR stem",
    "wrn28-2": "WideResNet-28-2 (LiRA's CIFAR-10 model)",
    "wrn40-4": "WideResNet-40-4",
    "fastnet": "airbench-style fast CIFAR net (frozen patch-whitening stem)",
    "gpt": "tiny causal GPT for text records (model.layers, width, heads, dropout)",
}


def list_models(
    input_shape: tuple[int, ...] | None = None, num_classes: int | None = None
) -> list[tuple[str, str, int | None]]:
    """Every form `model.arch` takes as (name, what it is, parameters): the built-in networks,
    with their parameter count at their defaults for records of `input_shape` and `num_classes`
    (None where not given or where the network does not take such records), then the sklearn and
    python: forms. Builds each network once (torch is imported only when a shape is given)."""
    rows: list[tuple[str, str, int | None]] = []
    for name in ARCHITECTURES:
        count = None
        if input_shape is not None and num_classes is not None:
            from miakit.config import ModelConfig
            from miakit.models import build_model

            defaults = ModelConfig().model_dump(exclude={"arch"})
            try:
                net = build_model(name, input_shape, num_classes, **defaults)
                count = sum(p.numel() for p in net.parameters())
            except MiakitError:
                count = None
        rows.append((name, DESCRIPTIONS[name], count))
    rows.append(
        (
            SKLEARN,
            "a scikit-learn classifier: model.estimator (one of "
            + ", ".join(FITTED_PARTS)
            + "), model.params, model.standardize; saved with skops",
            None,
        )
    )
    rows.append(
        (
            f"{USER_PREFIX}package.module:factory",
            "your own torch module: factory(input_shape, num_classes) -> nn.Module, trained "
            "with train.*; its source file is hashed, so editing it retrains",
            None,
        )
    )
    return rows


#: The same for the stacked trainer (train.batched), in the content hash of models it trains:
#: 2: torch.optim's SGD and Adam over the stacked parameters (rounding differs from revision 1's).
STACKED_TRAINER_REVISION = 2
