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

Every record is BOS + its UTF-8 bytes + EOS, padded to L = the longest record + 2 tokens;
records over MAX_BYTES bytes are refused, as are empty files and empty records.
"""

from __future__ import annotations

import csv
import json
from functools import cache
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
    """The pool of the file's records: token ids int64 [N, L], y zeros [N], 2 classes,
    vocab_size tokens.VOCAB_SIZE. MiakitError (naming the file and line) on unreadable or
    malformed records."""
    return text_pool(read_texts(path, "data.path"), path)


def is_saved_dataset(path: Path) -> bool:
    """Whether the folder looks like a `datasets` save (state.json, or a DatasetDict's
    dataset_dict.json): `load_saved_dataset` then reads or refuses it."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def load_saved_dataset(path: Path) -> Pool:
    """The text pool of a folder written by `datasets.Dataset.save_to_disk` (see the module's
    docstring). MiakitError naming the folder when it is no saved Dataset (a DatasetDict, a
    state.json naming other files, unreadable files), has no string `text` column, a bad
    label, or when the `text` extra is not installed."""
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
    texts = dataset["text"]
    labels = dataset["label"] if "label" in dataset.column_names else [None] * len(texts)
    for number, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not text:
            raise MiakitError(f"{path}: record {number}: 'text' must be a non-empty string")
        _check_label(label, f"{path}: record {number}")
    return text_pool(list(texts), path)


def read_texts(path: Path, setting: str) -> list[str]:
    """The texts of a .txt, .jsonl or .csv file of records, in file order. MiakitError naming
    `setting` and the file (and line) when it is missing, unreadable or malformed."""
    if path.suffix not in TEXT_SUFFIXES:
        raise MiakitError(f"{setting}: {path} is not a .txt, .jsonl or .csv file of text records")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MiakitError(f"{setting}: cannot read {path} as UTF-8 text ({exc})") from exc
    return _records(raw, path)[0]


def read_records(path: Path) -> tuple[list[str], list[int | None]]:
    """The texts of data.path and their labels (None where a record has none). MiakitError
    (naming the file and line) on unreadable or malformed records, or fewer than 2 of them."""
    if path.suffix not in TEXT_SUFFIXES:
        raise MiakitError(f"data.path: {path} is not a .txt, .jsonl or .csv file of text records")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MiakitError(f"data.path: cannot read {path} as UTF-8 text ({exc})") from exc
    texts, labels = _records(raw, path)
    if len(texts) < 2:
        raise MiakitError(f"data.path: {path} holds {len(texts)} records; at least 2 are needed")
    return texts, labels


def load_prefix(path: Path, shots: int | None) -> tuple[list[str], np.ndarray]:
    """A ReCaLL prefix (query.recall_prefix, query.recall_shots): the file's first `shots` texts
    (all by default) and their tokens int64 [K] (`tokens.encode_prefix`). MiakitError naming
    the setting when the file cannot be read or holds fewer texts."""
    texts = read_texts(path, "query.recall_prefix")
    if not texts or (shots is not None and shots > len(texts)):
        raise MiakitError(
            f"query.recall_shots: {shots or 1} texts asked for but {path} holds {len(texts)}"
        )
    texts = texts[:shots]
    return texts, tokens.encode_prefix(texts)


def text_pool(texts: list[str], path: Path) -> Pool:
    """The pool of these texts (read from `path`, which names the pool): see `load_text`."""
    if len(texts) < 2:
        raise MiakitError(f"data.path: {path} holds {len(texts)} records; at least 2 are needed")
    longest = max(len(t.encode("utf-8")) for t in texts)
    if longest > MAX_BYTES:
        raise MiakitError(
            f"data.path: {path} has a record of {longest} bytes; at most {MAX_BYTES} are read"
        )
    ids = tokens.encode(texts, longest + 2)
    y = np.zeros(len(texts), dtype=np.int64)
    return Pool(f"user:{path.name}", ids, y, 2, vocab_size=tokens.VOCAB_SIZE)


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


def load_hf_text(path: Path, folder: Path, task: str) -> Pool:
    """The file's records tokenized by the hf model folder's tokenizer (`miakit.hf`): token ids
    int64 [N, L] padded with its pad id to the longest record (at most its model_max_length
    tokens, 512 when unset), the pool's `tokenizer` its files' hash and `pad_id` set. Task
    sequence-classification: y the records' labels (every record needs one), num_classes
    max + 1; causal-lm: y zeros, 2 classes and vocab_size the tokenizer's, as `load_text`, with
    the texts and the lowercased records' token ids (x and x_lower padded to one length L; the
    tokenizer should add a start token, as the language model predicts tokens 1..L−1).
    MiakitError naming the file for records without a label. Tokenized once per process for
    each content of the file and of the tokenizer's files (their SHA-256)."""
    from miakit import hf
    from miakit.store import file_hash

    return _hf_pool(path, file_hash(path), folder, hf.tokenizer_hash(folder), task)


@cache
def _hf_pool(path: Path, data_hash: str, folder: Path, tokenizer_hash: str, task: str) -> Pool:
    from miakit import hf

    texts, labels = read_records(path)
    tok = hf.tokenizer(folder)
    pad = hf.pad_id(folder)
    limit = tok.model_max_length if 0 < tok.model_max_length <= 4096 else 512
    encoded = tok(texts, truncation=True, max_length=limit)["input_ids"]
    common = {"tokenizer": hf.tokenizer_hash(folder), "pad_id": pad}
    if task == "causal-lm":
        lower = tok([t.lower() for t in texts], truncation=True, max_length=limit)["input_ids"]
        longest = max(len(ids) for ids in [*encoded, *lower])
        ids, ids_lower = _padded(encoded, longest, pad), _padded(lower, longest, pad)
        if (ids[:, 1:] == pad).all(axis=1).any():
            raise MiakitError(f"data.path: {path} has a record of fewer than 2 tokens")
        y = np.zeros(len(texts), dtype=np.int64)
        return Pool(
            f"user:{path.name}",
            ids,
            y,
            2,
            vocab_size=len(tok),
            texts=tuple(texts),
            x_lower=ids_lower,
            **common,
        )
    ids = _padded(encoded, max(len(ids) for ids in encoded), pad)
    unlabelled = [i for i, label in enumerate(labels) if label is None]
    if unlabelled:
        raise MiakitError(
            f"data.path: model.task sequence-classification needs a 'label' for every record; "
            f"{path} has {len(unlabelled)} without one (record {unlabelled[0] + 1} first)"
        )
    y = np.array(labels, dtype=np.int64)
    return Pool(f"user:{path.name}", ids, y, int(y.max()) + 1, **common)


def _padded(rows: list[list[int]], length: int, pad: int) -> np.ndarray:
    out = np.full((len(rows), length), pad, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
