"""Hugging Face transformers models as targets and references (`model.arch: hf:<folder or id>`).

The folder (or the hub id's snapshot, downloaded once by `huggingface_hub` into its cache) must
hold config.json and the weights as safetensors, and for the text tasks (sequence-classification,
causal-lm) a fast tokenizer (tokenizer.json): weights are loaded with `use_safetensors=True`,
never pickle files (pytorch_model.bin), and never with `trust_remote_code` (a config.json with
`auto_map` names code to run and is refused). Nothing here imports torch; `require_text_extra`
names the extra when transformers is missing.

An image classifier (task image-classification) takes the pool's images as its image processor
would give them (`image_inputs`, read from preprocessor_config.json as plain JSON, never code,
else from config.json): `image_pool` gives a grey pool three channels for a 3-channel model and
the processor's rescaling and normalization as the pool's per-channel mean and std on the 0..1
scale; the model resizes (`miakit.models.hf`).

The base model's identity (`base_identity`: the SHA-256 of its config, safetensors, tokenizer and
preprocessor files) is part of every model's content hash, so a changed base model retrains them
all.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from miakit.architectures import hf_source
from miakit.data.pool import Pool
from miakit.errors import MiakitError
from miakit.store import content_hash, file_hash

#: the tasks `model.task` takes for an hf arch
HF_TASKS = ("sequence-classification", "image-classification", "causal-lm")
#: the task whose records are images; the others take text records
IMAGE_TASK = "image-classification"
#: an image classifier's preprocessing settings (plain JSON), part of its identity where present
PREPROCESSOR_FILE = "preprocessor_config.json"
#: the tokenizer files of a folder that enter its identity (where present)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
#: the extra that installs transformers, tokenizers, safetensors and peft
TEXT_EXTRA = "pip install 'miakit[text]'"


def require_text_extra(what: str) -> None:
    """MiakitError naming the extra when transformers or tokenizers cannot be imported."""
    missing = [m for m in ("transformers", "tokenizers", "safetensors") if not _importable(m)]
    if missing:
        raise MiakitError(f"{what} needs {', '.join(missing)}: install them with {TEXT_EXTRA}")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


#: a hub id: owner/name (a path that exists locally is read as that folder instead)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def model_folder(arch: str, task: str | None) -> Path:
    """The checked local folder of an `hf:` arch for `task`: the folder itself when it exists,
    else, for a hub id (owner/name), its snapshot (config, safetensors, tokenizer and
    preprocessor files only) through the hub client's download and cache. MiakitError when it is
    missing or unusable (`check_folder`)."""
    source = hf_source(arch)
    path = Path(source).expanduser()
    if not path.exists() and _HUB_ID.fullmatch(source):
        path = _download(source)
    if not path.is_dir():
        raise MiakitError(f"model.arch: {arch}: no folder {path}")
    check_folder(path, arch, task)
    return path


def _download(repo_id: str) -> Path:
    require_text_extra("model.arch hf:")
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]
            )
        )
    except Exception as exc:
        raise MiakitError(
            f"model.arch: hf:{repo_id} is no local folder, and the hub cannot give it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


def check_folder(path: Path, arch: str, task: str | None) -> None:
    """MiakitError in one line unless `path` holds config.json without `auto_map`, safetensors
    weights and, for a text task (any but image-classification), tokenizer.json."""
    config = path / "config.json"
    if not config.is_file():
        raise MiakitError(f"model.arch: {arch}: {path} has no config.json")
    settings = _json(config, arch)
    if "auto_map" in settings:
        raise MiakitError(
            f"model.arch: {arch}: config.json has auto_map, code of the model's own that "
            "miakit never runs (trust_remote_code); use a model transformers implements"
        )
    if not weight_files(path):
        pickled = sorted(p.name for p in path.glob("*.bin"))
        found = (
            f"it has only {', '.join(pickled)}, pickle files miakit never loads; "
            if pickled
            else ""
        )
        raise MiakitError(
            f"model.arch: {arch}: {path} has no .safetensors weights; {found}convert them "
            "to safetensors"
        )
    if task != IMAGE_TASK and not (path / "tokenizer.json").is_file():
        raise MiakitError(
            f"model.arch: {arch}: {path} has no tokenizer.json (a fast tokenizer); save one "
            "with tokenizer.save_pretrained"
        )


def position_limit(path: Path) -> int | None:
    """The longest input, in tokens, the folder's model takes (config.json's
    max_position_embeddings or n_positions), or None where its config names none."""
    settings = json.loads((path / "config.json").read_text())
    for key in ("max_position_embeddings", "n_positions"):
        if isinstance(settings.get(key), int):
            return settings[key]
    return None


def _json(path: Path, arch: str) -> dict[str, Any]:
    """The JSON object in `path`; MiakitError naming model.arch when it cannot be read."""
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MiakitError(f"model.arch: {arch}: cannot read {path} ({exc})") from exc
    if not isinstance(settings, dict):
        raise MiakitError(f"model.arch: {arch}: {path} holds no JSON object")
    return settings


def weight_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def base_identity(path: Path) -> dict[str, str]:
    """{file name: SHA-256} of the folder's config, safetensors weights, and tokenizer and
    preprocessor files (those present)."""
    files = [path / "config.json", *weight_files(path)]
    optional = (*TOKENIZER_FILES, PREPROCESSOR_FILE)
    files += [path / name for name in optional if (path / name).is_file()]
    return {f.name: file_hash(f) for f in files}


def tokenizer_hash(path: Path) -> str:
    """The content hash of the folder's tokenizer files (part of a pool's fingerprint)."""
    return content_hash({n: file_hash(path / n) for n in TOKENIZER_FILES if (path / n).is_file()})


@cache
def _tokenizer(path: str, stamp: str):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(path)


def tokenizer(path: Path):
    """The folder's fast tokenizer (tokenizer.json), loaded once per process and content."""
    require_text_extra("model.arch hf:")
    return _tokenizer(str(path.resolve()), tokenizer_hash(path))


def fill_id(path: Path) -> int:
    """The id the model is given at padded positions (masked out by the attention mask): the
    tokenizer's pad token, else its EOS token; MiakitError when it has neither."""
    tok = tokenizer(path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        raise MiakitError(f"model.arch: the tokenizer in {path} has neither a pad nor an EOS token")
    return int(pad)


#: torch.nn.functional.interpolate's mode for an image processor's `resample` (PIL's codes:
#: 0 nearest, 2 bilinear, 3 bicubic); the other filters are stood in for by bilinear
RESAMPLE = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class ImageInputs:
    """What an hf image classifier takes: images of `channels` channels resized to `size`
    (height, width; None: as they come) with torch's `resample` mode, normalized per channel
    with `mean` and `std` on the 0..1 scale (None: the pool's own)."""

    channels: int
    size: tuple[int, int] | None
    resample: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


def image_inputs(path: Path, arch: str) -> ImageInputs:
    """The model folder's image inputs, from preprocessor_config.json where present (its size,
    or crop_size with do_center_crop, as a square for a shortest_edge; resample; do_rescale with
    rescale_factor and do_normalize with image_mean and image_std, folded into one mean and std
    on the 0..1 scale: (255 · factor · p − mean) / std = (p − mean / (255 · factor)) / (std /
    (255 · factor)), factor 1 without rescaling), else from config.json (num_channels, default 3,
    and image_size). The pool is resized to the size, never cropped. MiakitError naming the file
    for settings of the wrong form."""
    config = _json(path / "config.json", arch)
    channels = config.get("num_channels", 3)
    if not _is_number(channels, int) or channels < 1:
        raise MiakitError(
            f"model.arch: {arch}: config.json num_channels must be a whole number > 0, "
            f"not {channels!r}"
        )
    processor_file = path / PREPROCESSOR_FILE
    if not processor_file.is_file():
        return ImageInputs(
            channels, _size(config.get("image_size"), arch, "config.json"), RESAMPLE[2], None, None
        )
    processor = _json(processor_file, arch)
    crop = processor.get("do_center_crop") and processor.get("crop_size") is not None
    size = _size(processor.get("crop_size" if crop else "size"), arch, PREPROCESSOR_FILE)
    if size is None:
        size = _size(config.get("image_size"), arch, "config.json")
    factor = processor.get("rescale_factor", 1 / 255) if processor.get("do_rescale", True) else 1
    if not _is_number(factor) or factor <= 0:
        raise MiakitError(
            f"model.arch: {arch}: {PREPROCESSOR_FILE} rescale_factor must be a number > 0, "
            f"not {factor!r}"
        )
    scale = 255.0 * factor  # pixels p in [0, 1] are 255 · p to the processor
    normalize = processor.get("do_normalize", True)
    mean = _per_channel(
        processor.get("image_mean") if normalize else 0.0, channels, arch, "image_mean"
    )
    std = _per_channel(
        processor.get("image_std") if normalize else 1.0, channels, arch, "image_std"
    )
    if min(std) <= 0:
        raise MiakitError(f"model.arch: {arch}: {PREPROCESSOR_FILE} image_std must be > 0")
    return ImageInputs(
        channels,
        size,
        RESAMPLE.get(processor.get("resample", 2), RESAMPLE[2]),
        tuple(m / scale for m in mean),
        tuple(s / scale for s in std),
    )


def _size(value: Any, arch: str, where: str) -> tuple[int, int] | None:
    """(height, width) of an image size setting: a number, [height, width], {height, width} or
    {shortest_edge} (a square); None when not given."""
    if value is None:
        return None
    if isinstance(value, dict) and "height" in value and "width" in value:
        value = (value["height"], value["width"])
    elif isinstance(value, dict) and "shortest_edge" in value:
        value = value["shortest_edge"]
    if _is_number(value, int):
        value = (value, value)
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(_is_number(v, int) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[1])
    raise MiakitError(
        f"model.arch: {arch}: {where} gives an image size miakit cannot read ({value!r}); "
        "give a number, [height, width], {height, width} or {shortest_edge}"
    )


def _is_number(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    """A number of JSON of `kind` (int: a whole one), not a boolean."""
    return isinstance(value, kind) and not isinstance(value, bool)


def _per_channel(value: Any, channels: int, arch: str, key: str) -> tuple[float, ...]:
    """One number per channel of a mean or std setting (a single number serves every channel)."""
    values = value if isinstance(value, list | tuple) else [value]
    if len(values) == 1:
        values = list(values) * channels
    if len(values) != channels or not all(_is_number(v) for v in values):
        raise MiakitError(
            f"model.arch: {arch}: {PREPROCESSOR_FILE} {key} must give {channels} numbers (the "
            f"model's num_channels), not {value!r}"
        )
    return tuple(float(v) for v in values)


def image_pool(pool: Pool, path: Path, arch: str) -> Pool:
    """The image pool as the folder's image classifier takes it (`image_inputs`): a grey pool's
    one channel repeated for a model of more channels (as image processors convert grey images
    to RGB), the mean and std the processor's, else the pool's own (repeated with its channel).
    MiakitError naming model.task for records that are no images, and model.arch for a pool of
    several channels that the model's num_channels differs from."""
    if not pool.is_image:
        kind = "text records" if pool.is_text else "feature vectors"
        raise MiakitError(
            f"model.task: {IMAGE_TASK} takes images [H, W, C]; {pool.name}'s records are {kind}"
        )
    inputs = image_inputs(path, arch)
    have = pool.x.shape[-1]
    if have not in (1, inputs.channels):
        raise MiakitError(
            f"model.arch: {arch} takes {inputs.channels}-channel images (config.json "
            f"num_channels); {pool.name}'s have {have}"
        )
    repeat = inputs.channels // have
    if repeat == 1 and inputs.mean is None:
        return pool
    mean, std = inputs.mean, inputs.std
    if mean is None and pool.mean is not None and pool.std is not None:
        mean, std = pool.mean * repeat, pool.std * repeat
    grown = {
        name: np.repeat(x, repeat, axis=-1)
        for name, x in (("x", pool.x), ("x_test", pool.x_test))
        if x is not None and repeat > 1
    }
    return replace(pool, mean=mean, std=std, **grown)
