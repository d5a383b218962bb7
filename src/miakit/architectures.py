"""The architectures' names and code revisions, without importing torch (the config and every
command that trains nothing read them).

`model.arch` takes one of three forms:
- a built-in network's name (`ARCHITECTURES`, built by `miakit.models`);
- `sklearn`: a scikit-learn-compatible estimator named by `model.estimator` (an import path under
  one of `ESTIMATOR_MODULES`), trained and queried by `miakit.models.sklearn_model`;
- `python:package.module:factory`: the user's own PyTorch module, `factory(input_shape,
  num_classes) -> nn.Module` (`miakit.models.user`).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from miakit.errors import MiakitError

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
#: so it is kept to these); xgboost and lightgbm only where they are installed.
ESTIMATOR_MODULES = ("sklearn", "xgboost", "lightgbm")

_USER_ARCH = re.compile(r"python:([A-Za-z_][\w.]*):([A-Za-z_]\w*)")


def is_sklearn(arch: str) -> bool:
    return arch == SKLEARN


def is_user_module(arch: str) -> bool:
    return arch.startswith(USER_PREFIX)


def check_arch_name(arch: str) -> str:
    """`arch` when it has one of the three forms; else ValueError listing them (the config turns
    it into an error naming model.arch). Nothing is imported."""
    if arch in ARCHITECTURES or arch == SKLEARN or _USER_ARCH.fullmatch(arch):
        return arch
    raise ValueError(
        f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}, {SKLEARN} (with "
        f"model.estimator), or {USER_PREFIX}package.module:factory (your own torch module)"
    )


def user_factory_path(arch: str) -> tuple[str, str]:
    """(module path, factory name) of a `python:module:factory` arch."""
    match = _USER_ARCH.fullmatch(arch)
    if match is None:
        raise MiakitError(f"model.arch: {arch!r} is not of the form python:package.module:factory")
    return match.group(1), match.group(2)


def user_module_file(arch: str) -> Path:
    """The source file of a `python:module:factory` arch's module, found without running it
    (its parent packages are imported); MiakitError when it cannot be found."""
    module, _ = user_factory_path(arch)
    try:
        spec = importlib.util.find_spec(module)
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
    installed = [m for m in ESTIMATOR_MODULES if importlib.util.find_spec(m) is not None]
    rows.append(
        (
            SKLEARN,
            "a scikit-learn-compatible classifier with predict_proba: model.estimator (import "
            "path under " + ", ".join(f"{m}." for m in installed) + "), model.params, "
            "model.standardize; saved with skops",
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
