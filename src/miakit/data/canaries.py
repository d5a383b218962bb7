"""Canaries for privacy auditing: pool records whose membership is a fair coin per model.

Steinke, Nasr and Jagielski (NeurIPS 2023, "Privacy Auditing with One (1) Training Run") audit
one training run by including each of m canaries independently with probability 1/2. Here m pool
records become canaries: `mislabelled` (the record with a uniformly drawn wrong label, the
strongest black-box canary of that paper's Section 7), `natural` (the record unchanged),
`noise` (uniform random pixels, or features drawn from the pool's per-feature mean and std, with
a uniform random label) or, for text records, `secret` (Carlini, Liu, Erlingsson, Kos and Song,
USENIX Security 2019, "The Secret Sharer": a format such as "the secret number is {}" filled
with a secret drawn uniformly from the randomness space R of d-digit numbers, distinct secrets
for distinct canaries; `miakit.evaluate.exposure` ranks each among its alternatives, every one
of them or a uniform sample, `draw_alternatives`). Every model's keep bit for each canary is
drawn independently with probability 1/2, whatever the split strategy does with the other
records; attacks, trainers and loss traces see canaries as ordinary pool records.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from miakit.data.pool import Pool
from miakit.errors import MiakitError

CanaryKind = Literal["mislabelled", "natural", "noise", "secret"]


def canary_records(num_records: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted int64 [count]: the pool indices that become canaries. Raises MiakitError when
    count exceeds num_records."""
    if count > num_records:
        raise MiakitError(
            f"dp_audit.canaries.count: {count} canaries asked for but the pool has "
            f"{num_records} records"
        )
    return np.sort(rng.choice(num_records, size=count, replace=False)).astype(np.int64)


def insert_canaries(
    pool: Pool, records: np.ndarray, kind: CanaryKind, rng: np.random.Generator
) -> Pool:
    """A copy of `pool` with the records at `records` (int [m]) turned into canaries of `kind`.

    The test split is untouched. Raises MiakitError on an unknown kind or a pool of one class
    (no wrong label to give).
    """
    x, y = pool.x.copy(), pool.y.copy()
    m = len(records)
    if kind == "mislabelled":
        if pool.num_classes < 2:
            raise MiakitError("dp_audit.canaries.kind mislabelled needs at least two classes")
        y[records] = (y[records] + rng.integers(1, pool.num_classes, size=m)) % pool.num_classes
    elif kind == "noise":
        if pool.is_image:
            x[records] = rng.integers(0, 256, size=(m, *x.shape[1:]), dtype=np.uint8)
        else:
            mean, std = x.mean(axis=0), x.std(axis=0)
            x[records] = (mean + std * rng.standard_normal((m, *x.shape[1:]))).astype(x.dtype)
        y[records] = rng.integers(0, pool.num_classes, size=m)
    elif kind == "secret":
        raise MiakitError("dp_audit.canaries.kind secret: insert them with insert_secrets")
    elif kind != "natural":
        raise MiakitError(f"dp_audit.canaries.kind: unknown kind {kind!r}")
    return replace(pool, x=x, y=y)


def secret_texts(secret_format: str, digits: int, secrets: np.ndarray) -> list[str]:
    """The texts of R that hold `secrets` (int [k], each in 0..10^d − 1), in that order:
    secret_format filled with each, zero-padded to d digits (all of R: np.arange(10**d))."""
    return [secret_format.format(f"{int(r):0{digits}d}") for r in secrets]


def draw_secrets(count: int, digits: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [count]: distinct secrets drawn uniformly from 0..10^d − 1. MiakitError when R
    holds no more than count secrets (each canary needs alternatives no canary uses)."""
    if count >= 10**digits:
        raise MiakitError(
            f"dp_audit.canaries.count: {count} secret canaries need more than 10^{digits} "
            "secrets (dp_audit.canaries.secret_digits)"
        )
    return rng.choice(10**digits, size=count, replace=False).astype(np.int64)


def enumerates_alternatives(count: int, digits: int, samples: int) -> bool:
    """Whether exposure ranks each of `count` canaries among every alternative of R (the
    10^d − count secrets no canary holds) rather than among `samples` of them: where there are
    at most `samples`, scoring them all costs no more than the sample, and is exact."""
    return 10**digits - count <= samples


def draw_alternatives(
    secrets: np.ndarray, digits: int, samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted int64 [samples]: distinct secrets drawn uniformly among the 10^d − m that none of
    the m canaries' `secrets` (int [m]) is. MiakitError when there are fewer than `samples`."""
    if samples > 10**digits - len(secrets):
        raise MiakitError(
            f"dp_audit.canaries.secret_samples: {samples} alternatives asked for, but R holds "
            f"only {10**digits - len(secrets)} secrets no canary holds"
        )
    # the first `samples` non-secrets of a uniformly ordered draw: a uniform subset of them
    drawn = rng.choice(10**digits, size=samples + len(secrets), replace=False)
    return np.sort(drawn[~np.isin(drawn, secrets)][:samples]).astype(np.int64)


def insert_secrets(
    pool: Pool,
    records: np.ndarray,
    secrets: np.ndarray,
    secret_format: str,
    digits: int,
    hf_folder: Path | None = None,
) -> Pool:
    """A copy of the text pool with the records at `records` (int [m]) made secret canaries:
    record records[i] becomes secret_format filled with secrets[i], tokenized as the others
    are (`miakit.tokens`, or with an hf model folder its tokenizer, `hf_tokens`). The pool's
    token length grows where a canary needs it. MiakitError on a pool of no text records."""
    from miakit import tokens
    from miakit.data.text import MAX_BYTES, hf_tokens

    if not pool.is_text:
        raise MiakitError(f"dp_audit.canaries.kind secret: for text records, not {pool.name}'s")
    canaries = secret_texts(secret_format, digits, secrets)
    if hf_folder is not None:
        texts = list(pool.texts or ())
        for record, text in zip(records, canaries, strict=True):
            texts[record] = text
        x, x_lower = hf_tokens(texts, hf_folder, lower=True, length=pool.x.shape[1])
        return replace(pool, x=x, x_lower=x_lower, texts=tuple(texts))
    size = len(secret_texts(secret_format, digits, [0])[0].encode("utf-8"))  # every secret's
    if size > MAX_BYTES:
        raise MiakitError(
            f"dp_audit.canaries.secret_format: a canary of {size} bytes; at most {MAX_BYTES}"
        )
    texts = [tokens.decode(row).decode("utf-8") for row in pool.x]
    for record, text in zip(records, canaries, strict=True):
        texts[record] = text
    length = max(pool.x.shape[1], size + 2)
    return replace(pool, x=tokens.encode(texts, length))


MAX_REDRAW_SLACK = 0.01


def redraw_slack(num_models: int, count: int) -> float:
    """count · 2^(1−M): a bound on the total-variation distance between canary_keep's bits and
    independent fair coins, hence on what it adds to an audit's β (see canary_keep)."""
    return count * 2.0 ** (1 - num_models)


def canary_keep(keep: np.ndarray, records: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of the keep matrix (bool [M, N]) whose canary columns are independent fair coins.

    A column that comes out all IN or all OUT is drawn again (an attack needs each record IN for
    some model and OUT for another). That conditions on an event of probability at most
    redraw_slack(M, m), so the bits differ from independent coins by at most that much in total
    variation; raises MiakitError when it exceeds 0.01 (too few models for so many canaries).
    """
    num_models = keep.shape[0]
    slack = redraw_slack(num_models, len(records))
    if slack > MAX_REDRAW_SLACK:
        raise MiakitError(
            f"dp_audit.canaries: {len(records)} canaries need more than {num_models} models "
            f"(at least log2(m) + 8 = {int(np.ceil(np.log2(max(len(records), 1)) + 8))}) so that "
            "each canary's keep bits are fair coins"
        )
    keep = keep.copy()
    bits = rng.random((num_models, len(records))) < 0.5
    while True:
        constant = bits.all(axis=0) | ~bits.any(axis=0)
        if not constant.any():
            break
        bits[:, constant] = rng.random((num_models, int(constant.sum()))) < 0.5
    keep[:, records] = bits
    return keep
