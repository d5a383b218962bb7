"""Hugging Face transformers models as targets and references (`model.arch: hf:<folder or id>`).

The folder (or the hub id's snapshot, downloaded once by `huggingface_hub` into its cache) must
hold config.json, the weights as safetensors and a fast tokenizer (tokenizer.json): weights are
loaded with `use_safetensors=True`, never pickle files (pytorch_model.bin), and never with
`trust_remote_code` (a config.json with `auto_map` names code to run and is refused). Nothing
here imports torch; `require_text_extra` names the extra when transformers is missing.

The base model's identity (`base_identity`: the SHA-256 of its config, safetensors and tokenizer
files) is part of every model's content hash, so a changed base model retrains them all.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path

from miakit.architectures import hf_source
from miakit.errors import MiakitError
from miakit.store import content_hash, file_hash

#: the tasks `model.task` takes for an hf arch
HF_TASKS = ("sequence-classification", "causal-lm")
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


def model_folder(arch: str) -> Path:
    """The checked local folder of an `hf:` arch: the folder itself when it exists, else, for a
    hub id (owner/name), its snapshot (config, safetensors and tokenizer files only) through the
    hub client's download and cache. MiakitError when it is missing or unusable
    (`check_folder`)."""
    source = hf_source(arch)
    path = Path(source).expanduser()
    if not path.exists() and _HUB_ID.fullmatch(source):
        path = _download(source)
    if not path.is_dir():
        raise MiakitError(f"model.arch: {arch}: no folder {path}")
    check_folder(path, arch)
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


def check_folder(path: Path, arch: str) -> None:
    """MiakitError in one line unless `path` holds config.json without `auto_map`, safetensors
    weights and tokenizer.json."""
    config = path / "config.json"
    if not config.is_file():
        raise MiakitError(f"model.arch: {arch}: {path} has no config.json")
    try:
        settings = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MiakitError(f"model.arch: {arch}: cannot read {config} ({exc})") from exc
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
    if not (path / "tokenizer.json").is_file():
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


def weight_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def base_identity(path: Path) -> dict[str, str]:
    """{file name: SHA-256} of the folder's config, safetensors weights and tokenizer files."""
    files = [path / "config.json", *weight_files(path)]
    files += [path / name for name in TOKENIZER_FILES if (path / name).is_file()]
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
