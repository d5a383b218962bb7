"""Text records from the user's file, tokenized once per run with `miakit.tokens`.

`.txt`: one record per non-empty line. `.jsonl`: one JSON object per line with a string `text`
(and an optional integer `label`). `.csv`: a header row with a `text` column (and an optional
`label` column). Labels are read and checked (integers ≥ 0) but causal language models do not
use them: every text pool has the single "class" of its own next tokens, y = 0, and its models'
logits.npy holds the two-class view [log p̄, log(1 − p̄)] of the mean token probability
(`miakit.query.query_tokens`).

A folder saved by `datasets.Dataset.save_to_disk` (a `text` string column, an optional integer
`label` column) is read with `datasets.Dataset.load_from_disk` (the `text` extra), after checking
that it is one: state.json and dataset_info.json beside the Arrow files state.json names (plain
file names ending in .arrow), nothing else (no loading script runs, nothing is unpickled).

With miakit's byte tokenizer (`miakit.tokens`, model.arch gpt) every record is BOS + its UTF-8
bytes + EOS, padded to L = the longest record + 2 tokens; records over MAX_BYTES bytes are
refused, as are empty files and empty records. With an hf model's tokenizer (`load_hf_text`)
records are padded with HF_PAD, an id no token has, and their token ids are cached by the
content of the texts and of the tokenizer's files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from miakit import tokens
from miakit.data.pool import Pool
from miakit.errors import MiakitError

#: file suffixes read as text records
TEXT_SUFFIXES = (".txt", ".jsonl", ".csv")
#: the longest record, in UTF-8 bytes
MAX_BYTES = 1022


def load_text(path: Path) -> Pool:
    """The pool of data.path's records (a file or a saved Dataset folder, `read_records`):
    token ids int64 [N, L], y zeros [N], 2 classes, vocab_size tokens.VOCAB_SIZE. MiakitError
    (naming the file and line) on unreadable or malformed records."""
    texts = read_records(path)[0]
    longest = max(len(t.encode("utf-8")) for t in texts)
    if longest > MAX_BYTES:
        raise MiakitError(
            f"data.path: {path} has a record of {longest} bytes; at most {MAX_BYTES} are read"
        )
    ids = tokens.encode(texts, longest + 2)
    y = np.zeros(len(texts), dtype=np.int64)
    return Pool(f"user:{path.name}", ids, y, 2, vocab_size=tokens.VOCAB_SIZE)


def is_saved_dataset(path: Path) -> bool:
    """Whether the folder looks like a `datasets` save (state.json, or a DatasetDict's
    dataset_dict.json): `read_records` then reads or refuses it."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def read_records(path: Path) -> tuple[list[str], list[int | None]]:
    """The texts of data.path and their labels (None where a record has none), in order: a
    .txt, .jsonl or .csv file, or a folder saved by `datasets.Dataset.save_to_disk` (see the
    module's docstring). MiakitError (naming the file and line, or the folder and record) on
    unreadable or malformed records, or fewer than 2 of them; for a folder also when it is no
    saved Dataset (a DatasetDict, a state.json naming other files), has no string `text` column,
    or when the `text` extra is not installed."""
    if path.is_dir():
        texts, labels = _saved_dataset_records(path)
    else:
        texts, labels = _records(_read_file(path, "data.path"), path)
    if len(texts) < 2:
        raise MiakitError(f"data.path: {path} holds {len(texts)} records; at least 2 are needed")
    return texts, labels


def _saved_dataset_records(path: Path) -> tuple[list[str], list[int | None]]:
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        files = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        hint = (
            " (a DatasetDict: give one split's folder)"
            if (path / "dataset_dict.json").is_file()
            else ""
        )
        raise MiakitError(f"data.path: {path} is not a saved datasets.Dataset{hint}") from exc
    plain = all(
        isinstance(f, str) and f.endswith(".arrow") and Path(f).name == f and (path / f).is_file()
        for f in files
    )
    if not files or not plain or not (path / "dataset_info.json").is_file():
        raise MiakitError(
            f"data.path: {path} is not a saved datasets.Dataset (state.json, dataset_info.json "
            "and the .arrow files state.json names, side by side)"
        )
    try:
        import datasets
    except ImportError as exc:
        raise MiakitError(
            f"data.path: {path} is a saved datasets.Dataset; reading it needs the text extra "
            "(pip install 'miakit[text]')"
        ) from exc
    try:
        dataset = datasets.Dataset.load_from_disk(str(path), keep_in_memory=True)
    except Exception as exc:  # the library's many errors on a corrupt save: one line
        raise MiakitError(f"data.path: cannot read the saved dataset {path} ({exc})") from exc
    column = dataset.features.get("text")
    if not isinstance(column, datasets.Value) or column.dtype not in ("string", "large_string"):
        raise MiakitError(
            f"data.path: {path} needs a string column 'text'; it has {dataset.features}"
        )
    texts = list(dataset["text"])
    given = dataset["label"] if "label" in dataset.column_names else [None] * len(texts)
    labels = []
    for number, (text, label) in enumerate(zip(texts, given, strict=True)):
        if not text:
            raise MiakitError(f"{path}: record {number}: 'text' must be a non-empty string")
        labels.append(_check_label(label, f"{path}: record {number}"))
    return texts, labels


def read_texts(path: Path, setting: str) -> list[str]:
    """The texts of a .txt, .jsonl or .csv file of records, in file order. MiakitError naming
    `setting` and the file (and line) when it is missing, unreadable or malformed."""
    return _records(_read_file(path, setting), path)[0]


def _read_file(path: Path, setting: str) -> str:
    if path.suffix not in TEXT_SUFFIXES:
        raise MiakitError(f"{setting}: {path} is not a .txt, .jsonl or .csv file of text records")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MiakitError(f"{setting}: cannot read {path} as UTF-8 text ({exc})") from exc


def load_prefix(
    path: Path, shots: int | None, hf_folder: Path | None = None
) -> tuple[list[str], np.ndarray]:
    """A ReCaLL prefix (query.recall_prefix, query.recall_shots): the file's first `shots`
    texts (all by default) and their tokens int64 [K], each text framed as a record is and laid
    end to end (`tokens.encode_prefix`; with an hf model folder, as its tokenizer frames a
    record, `hf_tokens`). MiakitError naming the setting when the file cannot be read or holds
    fewer texts."""
    texts = read_texts(path, "query.recall_prefix")
    if not texts or (shots is not None and shots > len(texts)):
        raise MiakitError(
            f"query.recall_shots: {shots or 1} texts asked for but {path} holds {len(texts)}"
        )
    texts = texts[:shots]
    if hf_folder is None:
        return texts, tokens.encode_prefix(texts)
    ids = hf_tokens(texts, hf_folder)[0]
    return texts, ids[ids != HF_PAD]  # row by row: each text's tokens in turn


def _records(raw: str, path: Path) -> tuple[list[str], list[int | None]]:
    if path.suffix == ".txt":
        texts = [line for line in raw.splitlines() if line.strip()]
        return texts, [None] * len(texts)
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MiakitError(f"{path}:{number}: not a JSON object ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise MiakitError(f"{path}:{number}: expected a JSON object with 'text'")
            rows.append((number, row))
    else:
        reader = csv.DictReader(raw.splitlines())
        if reader.fieldnames is None or "text" not in reader.fieldnames:
            raise MiakitError(f"{path}: the header row needs a 'text' column")
        rows = [(number, row) for number, row in enumerate(reader, 2)]
    texts, labels = [], []
    for number, row in rows:
        text = row.get("text")
        if not isinstance(text, str) or not text:
            raise MiakitError(f"{path}:{number}: 'text' must be a non-empty string")
        labels.append(_check_label(row.get("label"), f"{path}:{number}"))
        texts.append(text)
    return texts, labels


def _check_label(label: object, where: str) -> int | None:
    if label is None or label == "":
        return None
    try:
        value = int(label) if isinstance(label, str) else label
    except ValueError as exc:
        raise MiakitError(f"{where}: 'label' must be an integer ≥ 0, got {label!r}") from exc
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MiakitError(f"{where}: 'label' must be an integer ≥ 0, got {label!r}")
    return value


#: The padding id of records tokenized by an hf tokenizer: no token has it, so padding is never
#: mistaken for a real token (a tokenizer without a pad token would pad with EOS, a real target
#: of a causal LM). `miakit.models.hf.HFNet` feeds the model a real id there (`hf.fill_id`),
#: masked out by the attention mask, and every loss and statistic masks targets equal to it.
HF_PAD = -1
#: part of the cache key of `hf_tokens`: bump it whenever its output changes
HF_TOKENS_REVISION = 1


def load_hf_text(path: Path, folder: Path, task: str) -> Pool:
    """data.path's records (`read_records`: a file or a saved Dataset folder) tokenized by the
    hf model folder's tokenizer (`miakit.hf`, `hf_tokens`): token ids int64 [N, L] padded with
    HF_PAD, the pool's `tokenizer` its files' hash and `pad_id` HF_PAD. Task
    sequence-classification: y the records' labels (every record needs one), num_classes
    max + 1; causal-lm: y zeros, 2 classes and vocab_size the tokenizer's, as `load_text`, with
    the texts and the lowercased records' token ids x_lower. MiakitError naming the file for
    records without a label or (causal-lm) of fewer than 2 tokens."""
    from miakit import hf

    texts, labels = read_records(path)
    causal = task == "causal-lm"
    common = {"tokenizer": hf.tokenizer_hash(folder), "pad_id": HF_PAD}
    if causal:
        ids, ids_lower = hf_tokens(texts, folder, lower=True)
        if (ids[:, 1:] == HF_PAD).all(axis=1).any():
            raise MiakitError(f"data.path: {path} has a record of fewer than 2 tokens")
        y = np.zeros(len(texts), dtype=np.int64)
        return Pool(
            f"user:{path.name}",
            ids,
            y,
            2,
            vocab_size=len(hf.tokenizer(folder)),
            texts=tuple(texts),
            x_lower=ids_lower,
            **common,
        )
    unlabelled = [i for i, label in enumerate(labels) if label is None]
    if unlabelled:
        raise MiakitError(
            f"data.path: model.task sequence-classification needs a 'label' for every record; "
            f"{path} has {len(unlabelled)} without one (record {unlabelled[0] + 1} first)"
        )
    y = np.array(labels, dtype=np.int64)
    return Pool(f"user:{path.name}", hf_tokens(texts, folder)[0], y, int(y.max()) + 1, **common)


def hf_tokens(
    texts: list[str], folder: Path, lower: bool = False, length: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The texts' token ids int64 [N, L] under the folder's tokenizer, truncated at its
    model_max_length (512 when unset) and padded with HF_PAD to L = `length` or the longest,
    and with `lower` those of the texts lowercased (else None), padded to the same L. Read
    from the decoded-data cache (`miakit.data.cache`) when the same texts were tokenized by the
    same tokenizer files before, so every stage of a run tokenizes its records once."""
    from miakit import hf
    from miakit.data.cache import cached_arrays
    from miakit.store import content_hash

    def build() -> dict[str, np.ndarray]:
        tok = hf.tokenizer(folder)
        limit = tok.model_max_length if 0 < tok.model_max_length <= 4096 else 512
        rows = {"x": tok(texts, truncation=True, max_length=limit)["input_ids"]}
        if lower:
            rows["x_lower"] = tok([t.lower() for t in texts], truncation=True, max_length=limit)[
                "input_ids"
            ]
        longest = max(len(ids) for part in rows.values() for ids in part)
        return {name: _padded(part, max(longest, length or 0)) for name, part in rows.items()}

    key = [content_hash(texts), hf.tokenizer_hash(folder), str(lower), str(length)]
    arrays = cached_arrays(f"hf-tokens-{HF_TOKENS_REVISION}", key, build)
    return arrays["x"], arrays.get("x_lower")


def _padded(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.full((len(rows), length), HF_PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
