"""miakit's byte-level tokenizer for text records: every UTF-8 byte is a token (0–255), plus
BOS, EOS and PAD. No vocabulary is learnt, so nothing but this module's revision enters a pool's
fingerprint; a trained BPE tokenizer is a later addition.

A record of b bytes becomes BOS, its b bytes, EOS, then PAD up to the pool's length L: the
language model predicts tokens 1..L−1 from those before them, and PAD targets are masked out.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

BOS, EOS, PAD = 256, 257, 258
#: tokens in all: the 256 bytes and BOS, EOS, PAD
VOCAB_SIZE = 259
#: The token statistics a causal LM's query writes per model (`miakit.query.query_tokens`), each
#: [N, L − 1] float32 and NaN at PAD targets: log p of the actual next token, and the mean μ and
#: standard deviation σ of log p(z) over the model's next-token distribution z ~ p (Min-K%++'s).
#: token_logprobs_lower: log p of the actual next token of the record lowercased (`lowercase`).
TOKEN_STATS = ("token_logprobs", "token_mu", "token_sigma", "token_logprobs_lower")
#: The statistic a query with a ReCaLL prefix (query.recall_prefix) writes besides TOKEN_STATS,
#: [N, L − 1] float32, NaN at PAD targets: log p of each actual next token of the record when
#: the prefix's tokens precede the record's (`miakit.query.query_tokens`).
RECALL_STAT = "token_logprobs_recall"
#: The statistic a query of a run with secret canaries writes (dp_audit.canaries.kind secret),
#: float64 [k]: the log-perplexity in bits, −Σ_t log2 p(x_t | x_<t) over the real next tokens
#: (`miakit.query.log_perplexity`), of each text of the randomness space R the query scores
#: (`miakit.plan.scored_secrets`): all 10^d where R is enumerated, the canaries' own among them;
#: else the m canaries' texts, then those of the secret_samples sampled alternatives.
SECRET_STAT = "secret_log_perplexity"
#: part of every text pool's fingerprint: bump it whenever `encode` changes
REVISION = 1


def encode(texts: Sequence[str], length: int) -> np.ndarray:
    """Token ids int64 [N, length]: BOS, the UTF-8 bytes, EOS, PAD. ValueError when a text's
    bytes do not fit in length − 2."""
    out = np.full((len(texts), length), PAD, dtype=np.int64)
    for i, text in enumerate(texts):
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        if len(raw) + 2 > length:
            raise ValueError(f"record {i} has {len(raw)} bytes, more than {length - 2}")
        out[i, 0], out[i, 1 : len(raw) + 1], out[i, len(raw) + 1] = BOS, raw, EOS
    return out


def encode_prefix(texts: Sequence[str]) -> np.ndarray:
    """Token ids int64 [K] of texts laid end to end, each framed as a record is (BOS, its UTF-8
    bytes, EOS) but without padding: the context a ReCaLL prefix puts before a record."""
    return np.concatenate([encode([t], len(t.encode("utf-8")) + 2)[0] for t in texts])


def decode(tokens: np.ndarray) -> bytes:
    """The bytes of one record's tokens [L] (BOS, EOS and PAD dropped)."""
    row = np.asarray(tokens)
    return row[row < 256].astype(np.uint8).tobytes()


def target_mask(tokens: np.ndarray) -> np.ndarray:
    """bool [N, L−1]: which next-token targets (tokens 1..L−1) are real tokens, EOS included."""
    return np.asarray(tokens)[:, 1:] != PAD


def lowercase(tokens: np.ndarray) -> np.ndarray:
    """The token ids with ASCII letters A–Z lowercased (Python's bytes.lower()): every record
    keeps its length, so its PAD targets stay where they were (non-ASCII letters are kept)."""
    ids = np.asarray(tokens)
    upper = (ids >= ord("A")) & (ids <= ord("Z"))
    return np.where(upper, ids + (ord("a") - ord("A")), ids)


def zlib_bytes(tokens: np.ndarray) -> np.ndarray:
    """int64 [N]: the length in bytes of each record's text compressed by zlib (level 9),
    the entropy estimate of Carlini et al. 2021's zlib attack."""
    return np.array([len(zlib.compress(decode(row), 9)) for row in tokens], dtype=np.int64)


#: The largest mean token log-probability the two-class view takes (its log(1 − p̄) is finite).
MAX_MEAN_LOGPROB = -1e-12


def sequence_logits(mean_logprob: np.ndarray) -> np.ndarray:
    """The sequence signal of a causal LM's records, float64 [N, 1, 2]: the two-class view
    [log p̄, log(1 − p̄)] of p̄ = exp(mean token log p) from the records' mean token
    log-probabilities [N] (over their real next tokens, EOS included), log p̄ capped at
    MAX_MEAN_LOGPROB. With label 0 the loss transform is the mean token NLL, true_prob is p̄
    and LiRA's log-odds φ = log p̄ − log(1 − p̄) (`miakit.query.query_tokens`)."""
    mean = np.minimum(np.asarray(mean_logprob, dtype=np.float64), MAX_MEAN_LOGPROB)
    return np.stack([mean, np.log(-np.expm1(mean))], axis=-1)[:, None, :]
