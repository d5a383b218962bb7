"""A causal language model's per-token outputs given to `score` (its `tokens` argument): the
arrays checked and turned into the `TokenSignals` the text attacks read, and the sequence logits
the attacks over logits read, derived from them as the query derives them
(`miakit.tokens.sequence_logits`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from miakit.attacks.base import Attack
from miakit.attacks.text import mean_token_logprob
from miakit.errors import MiakitError
from miakit.signals import TokenSignals
from miakit.tokens import sequence_logits
from miakit.validate import check_text_attack

#: The keys of `tokens` holding M arrays [N, L − 1], one per model (NaN at padding): what each
#: holds and the sign its values have.
PER_MODEL = {
    "logprobs": ("log p of each actual next token", "≤ 0"),
    "mu": ("the mean of log p over the model's next-token distribution", "≤ 0"),
    "sigma": ("the standard deviation of log p over that distribution", "≥ 0"),
    "logprobs_lower": ("log p of each next token of the record lowercased", "≤ 0"),
    "logprobs_recall": ("log p of each actual next token after the ReCaLL prefix", "≤ 0"),
}
#: The keys of `tokens` holding one array for all models.
PER_RECORD = {
    "zlib_bytes": "int [N], each record's zlib-compressed length in bytes",
    "reference_logprobs": "[N, L − 1], a reference LM's log p of each actual next token",
}


def text_inputs(
    attack: Attack,
    options: Mapping[str, Any],
    tokens: Mapping[str, Any],
    logits: np.ndarray | Sequence[np.ndarray] | None,
    labels: np.ndarray | None,
    keep: np.ndarray,
    output: str,
) -> tuple[Sequence[np.ndarray], np.ndarray, TokenSignals]:
    """`score`'s logits, labels and `TokenSignals` where it is given `tokens`: the attack and
    its options apply to text records (as plan checks them), the output is the full one, the
    tokens are read (`read_tokens`), the labels 0 (default) and the logits the sequence signal,
    derived from tokens["logprobs"] unless given. MiakitError naming the argument."""
    check_text_attack(attack.name, options)
    if output != "logits":
        raise MiakitError(
            "output must be 'logits' with tokens (a language model's records are scored on its "
            f"full outputs), got {output!r}"
        )
    if keep.ndim != 2:
        raise MiakitError(f"keep must be a bool matrix [M, N], got shape {keep.shape}")
    token_signals = read_tokens(tokens, attack, *keep.shape)
    if labels is None:
        labels = np.zeros(keep.shape[1], dtype=np.int64)
    elif np.any(np.asarray(labels) != 0):
        raise MiakitError(
            "labels must be 0 with tokens (the class of p̄ in the sequence signal, the only "
            "label a language model's record has); leave labels out"
        )
    if logits is None:
        return derived_logits(token_signals), labels, token_signals
    if np.shape(logits[0])[-2:] != (1, 2):
        raise MiakitError(
            "logits with tokens must be the sequence signal [M, N, 1, 2] = [log p̄, "
            f"log(1 − p̄)] (a run's logits.npy), got [N, A, C] = {np.shape(logits[0])} per "
            "model; leave logits out to derive them from tokens['logprobs']"
        )
    return logits, labels, token_signals


def read_tokens(
    tokens: Mapping[str, Any], attack: Attack, num_models: int, num_records: int
) -> TokenSignals:
    """The `TokenSignals` of `tokens` for M models and N records (keep [M, N]); MiakitError,
    naming the key, for an unknown or missing key (the attack's `token_stats`), a shape or dtype
    that does not fit, infinity, a value of the wrong sign, or padding (NaN) where it does not
    match "logprobs"'s (every model's the same, every record with a real token)."""
    if not isinstance(tokens, Mapping):
        raise MiakitError(
            f"tokens must be a mapping name → array ({', '.join([*PER_MODEL, *PER_RECORD])}), "
            f"got {type(tokens).__name__}"
        )
    unknown = [k for k in tokens if k not in PER_MODEL and k not in PER_RECORD]
    if unknown:
        raise MiakitError(
            f"tokens has an unknown key {unknown[0]!r}; the keys are "
            f"{', '.join([*PER_MODEL, *PER_RECORD])}"
        )
    for name in ("logprobs", *attack.token_stats):
        if name not in tokens:
            what = PER_MODEL[name][0] if name in PER_MODEL else PER_RECORD[name]
            raise MiakitError(f"{attack.name} reads tokens[{name!r}] ({what}), which is missing")
    arrays = {
        name: _per_model(name, tokens[name], num_models, num_records)
        for name in PER_MODEL
        if name in tokens
    }
    length = arrays["logprobs"][0].shape[1]
    for name, models in arrays.items():
        for m, array in enumerate(models):
            if array.shape[1] != length:
                raise MiakitError(
                    f"tokens[{name!r}] of model {m} must have shape [N, L − 1] = "
                    f"({num_records}, {length}) like tokens['logprobs'], got {array.shape}"
                )
    padding = np.isnan(np.asarray(arrays["logprobs"][0]))
    _check_every_record_has_a_token("tokens['logprobs']", padding)
    for name, models in arrays.items():
        for m, array in enumerate(models):
            label = f"tokens[{name!r}] of model {m}"
            _check_values(label, array, PER_MODEL[name][1])
            if name == "logprobs_lower":  # the lowercased records' tokens, padded on their own
                _check_every_record_has_a_token(label, np.isnan(np.asarray(array)))
            else:
                _check_padding(label, array, padding)
    return TokenSignals(**arrays, **_per_record(tokens, padding))


def _per_record(tokens: Mapping[str, Any], padding: np.ndarray) -> dict[str, np.ndarray | None]:
    """zlib_bytes and reference_logprobs checked (None where not given), for records whose
    token log-probs have `padding` [N, L − 1]."""
    num_records = len(padding)
    reference = tokens.get("reference_logprobs")
    if reference is not None:
        reference = np.asarray(reference)
        if reference.shape != padding.shape or not np.issubdtype(reference.dtype, np.floating):
            raise MiakitError(
                f"tokens['reference_logprobs'] must be floats [N, L − 1] = {padding.shape}, got "
                f"{reference.dtype} of shape {reference.shape}"
            )
        _check_values("tokens['reference_logprobs']", reference, "≤ 0")
        _check_padding("tokens['reference_logprobs']", reference, padding)
    zlib = tokens.get("zlib_bytes")
    if zlib is not None:
        zlib = np.asarray(zlib)
        if zlib.shape != (num_records,) or not np.issubdtype(zlib.dtype, np.integer):
            raise MiakitError(
                f"tokens['zlib_bytes'] must be integers [N] = ({num_records},), got "
                f"{zlib.dtype} of shape {zlib.shape}"
            )
        if zlib.min() < 1:
            raise MiakitError(
                f"tokens['zlib_bytes'] must be compressed lengths in bytes (≥ 1), got {zlib.min()}"
            )
    return {"zlib_bytes": zlib, "reference_logprobs": reference}


def derived_logits(tokens: TokenSignals) -> list[np.ndarray]:
    """Each model's sequence logits [N, 1, 2] from its token log-probs: the two-class view of
    p̄ = exp(mean token log p) over the record's real next tokens, as the query writes them."""
    return [sequence_logits(mean_token_logprob(np.asarray(m, np.float64))) for m in tokens.logprobs]


def _per_model(name: str, value: Any, num_models: int, num_records: int) -> list[np.ndarray]:
    """An array [M, N, L − 1] or M arrays [N, L − 1] of floats, as a list of M arrays."""
    if isinstance(value, np.ndarray) and value.ndim != 3:
        raise MiakitError(
            f"tokens[{name!r}] must be an array [M, N, L − 1] (or a list of M arrays [N, L − 1]), "
            f"got shape {value.shape}"
        )
    models = [np.asarray(v) for v in value]
    if len(models) != num_models:
        raise MiakitError(
            f"tokens[{name!r}] holds {len(models)} models, but keep has {num_models} rows"
        )
    for m, array in enumerate(models):
        if (
            array.ndim != 2
            or len(array) != num_records
            or not np.issubdtype(array.dtype, np.floating)
        ):
            raise MiakitError(
                f"tokens[{name!r}] of model {m} must be floats [N, L − 1] = ({num_records}, "
                f"L − 1), got {array.dtype} of shape {array.shape}"
            )
    return models


def _check_values(label: str, array: np.ndarray, sign: str) -> None:
    """No infinity; every finite value ≤ 0 or ≥ 0 (`sign`)."""
    values = np.asarray(array, dtype=np.float64)
    if np.isinf(values).any():
        record, token = np.argwhere(np.isinf(values))[0]
        raise MiakitError(
            f"{label} holds infinity (record {record}, token {token}); NaN marks padding, every "
            "other value must be finite"
        )
    wrong = values > 0 if sign == "≤ 0" else values < 0
    if wrong.any():
        record, token = np.argwhere(wrong)[0]
        raise MiakitError(
            f"{label} must be {sign}, got {values[record, token]} (record {record}, token "
            f"{token}){'; log-probabilities, not NLL' if sign == '≤ 0' else ''}"
        )


def _check_padding(label: str, array: np.ndarray, padding: np.ndarray) -> None:
    """NaN exactly where tokens['logprobs'] of model 0 has it."""
    differs = np.isnan(np.asarray(array)) != padding
    if differs.any():
        record, token = np.argwhere(differs)[0]
        raise MiakitError(
            f"{label} has {'NaN' if not padding[record, token] else 'a value'} at record "
            f"{record}, token {token}, where tokens['logprobs'] of model 0 has "
            f"{'padding (NaN)' if padding[record, token] else 'a token'}: the padding must match"
        )


def _check_every_record_has_a_token(label: str, padding: np.ndarray) -> None:
    """Each record has a real token: a row of `padding` (bool [N, L − 1]) not all True."""
    empty = np.flatnonzero(padding.all(axis=1))
    if empty.size:
        raise MiakitError(
            f"{label} is all padding (NaN) at record {empty[0]}: every record needs a real "
            "next token (EOS included)"
        )
