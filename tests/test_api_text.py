"""`miakit.score` on a causal language model's per-token outputs (its `tokens` argument): every
text attack against its paper's formula in plain Python loops over the given arrays, the
sequence logits derived from the token log-probs against the two-class view computed by hand
(with LiRA's formulas in loops, test_lira's `expected_scores`), the scores of a tiny GPT run's
attack stage, and one clear error per kind of bad input."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import miakit
from miakit import pipeline, tokens
from miakit.attacks import make_attack
from miakit.signals import Signals, TokenSignals
from miakit.store import RunDir, load_npy

from .synthetic import balanced_keep_matrix
from .test_lira import expected_scores
from .text_corpus import recall_config

MODELS, RECORDS, LENGTH = 8, 24, 10


def token_arrays(seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, keep, real, real_lower): random per-token outputs of 8 models on 24 records,
    each record with its own count of real next tokens (`real`), the lowercased records with
    counts of their own (another tokenizer's), one σ = 0 (all mass on one token)."""
    draw = np.random.default_rng(seed)
    real = draw.integers(1, LENGTH + 1, size=RECORDS)
    real_lower = np.clip(real + draw.integers(-2, 3, size=RECORDS), 1, LENGTH)

    def stat(low, high, counts=real, models=MODELS):
        mask = np.arange(LENGTH)[None, :] < counts[:, None]
        values = draw.uniform(low, high, (models, RECORDS, LENGTH))
        return np.where(mask, values, np.nan)

    sigma = stat(0.1, 3)
    sigma[1, 0, 0] = 0.0
    given = {
        "logprobs": stat(-9, -0.01),
        "mu": stat(-4, -0.5),
        "sigma": sigma,
        "logprobs_lower": stat(-9, -0.01, real_lower),
        "logprobs_recall": stat(-12, -0.01),
        "zlib_bytes": draw.integers(5, 40, size=RECORDS),
        "reference_logprobs": stat(-9, -0.01, models=1)[0],
    }
    return given, balanced_keep_matrix(MODELS, RECORDS, seed), real, real_lower


def _values(array: np.ndarray, count: int) -> list[float]:
    return [float(v) for v in array[:count]]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _lowest_mean(values: list[float], k: float) -> float:
    """Min-K%: the mean of the max(1, ⌊k · n⌋) lowest of n values (MIMIR's count)."""
    count = max(1, int(len(values) * k + 1e-9))
    return sum(sorted(values)[:count]) / count


def plain_score(name: str, given: dict, m: int, n: int, count: int, lower: int, k: float) -> float:
    """The attack's score of record n under model m, from the papers' definitions."""
    lp = _values(given["logprobs"][m, n], count)
    nll = -_mean(lp)
    if name == "lm-loss":  # LOSS: −mean token NLL
        return -nll
    if name == "zlib":  # Carlini et al. 2021: log-perplexity over zlib entropy, negated
        return -nll / int(given["zlib_bytes"][n])
    if name == "lowercase":  # Carlini et al. 2021: ratio of the two log-perplexities, negated
        return -nll / -_mean(_values(given["logprobs_lower"][m, n], lower))
    if name == "min-k":  # Shi et al. 2024
        return _lowest_mean(lp, k)
    if name == "min-k-plus-plus":  # Zhang et al. 2024: standardised by μ and σ, σ = 0 as 0
        mu, sd = _values(given["mu"][m, n], count), _values(given["sigma"][m, n], count)
        z = [(a - b) / c if c > 0 else 0.0 for a, b, c in zip(lp, mu, sd, strict=True)]
        return _lowest_mean(z, k)
    if name == "recall":  # Xie et al. 2024: LL(x | P) / LL(x)
        return _mean(_values(given["logprobs_recall"][m, n], count)) / -nll
    assert name == "lm-ratio"  # the target's mean token log p minus the reference LM's
    return -nll - _mean(_values(given["reference_logprobs"][n], count))


TEXT_ATTACKS = ["lm-loss", "zlib", "lowercase", "min-k", "min-k-plus-plus", "recall", "lm-ratio"]


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.attack(name)) for name in TEXT_ATTACKS]
)
@pytest.mark.parametrize("k", [0.2, 0.5])
def test_each_text_attack_scores_its_formula_from_the_given_arrays(name, k):
    given, keep, real, real_lower = token_arrays()
    options = {"k": k} if name.startswith("min-k") else {}
    as_lists = {
        key: list(value) if key in ("logprobs", "mu", "sigma") else value
        for key, value in given.items()
    }  # M arrays [N, L − 1] read as the array [M, N, L − 1]
    for arrays in (given, as_lists):
        got = miakit.score(name, keep=keep, targets=[1, 6], tokens=arrays, **options)
        assert got.shape == (2, RECORDS)
        for row, m in enumerate([1, 6]):
            want = [
                plain_score(name, given, m, n, real[n], real_lower[n], k) for n in range(RECORDS)
            ]
            np.testing.assert_allclose(got[row], want, rtol=1e-12)


def test_an_attack_reads_only_the_keys_it_needs():
    given, keep, real, _ = token_arrays()
    only = {"logprobs": given["logprobs"]}
    got = miakit.score("min-k", keep=keep, tokens=only, k=0.5)
    want = [_lowest_mean(_values(given["logprobs"][0, n], real[n]), 0.5) for n in range(RECORDS)]
    np.testing.assert_allclose(got[0], want, rtol=1e-12)
    records = np.arange(RECORDS) % 3 == 0  # the records argument still applies
    part = miakit.score("lm-loss", keep=keep, tokens=only, records=records)
    assert np.isnan(part[:, ~records]).all() and np.isfinite(part[:, records]).all()


def _two_class(given: dict, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """By hand: each model's mean token log p of each record, log p̄, and the logits
    [M, N, 1, 2] = [log p̄, log(1 − p̄)]."""
    mean = np.array(
        [[_mean(_values(given["logprobs"][m, n], real[n])) for n in range(RECORDS)]
         for m in range(MODELS)]
    )  # fmt: skip
    logits = np.array([[[[v, math.log(1 - math.exp(v))]] for v in row] for row in mean])
    return mean, logits


def test_loss_lira_and_rmia_read_the_sequence_signal_derived_from_the_token_logprobs():
    given, keep, real, _ = token_arrays()
    mean, logits = _two_class(given, real)
    only = {"logprobs": given["logprobs"]}
    # loss with label 0: log p̄, the mean token log-probability
    np.testing.assert_allclose(miakit.score("loss", keep=keep, tokens=only), mean, rtol=1e-12)
    phi = (logits[..., 0] - logits[..., 1]).astype(np.float64)  # log p̄ − log(1 − p̄), [M, N, 1]
    got = miakit.score("lira-online", keep=keep, targets=[0, 5], tokens=only)
    for row, target in enumerate([0, 5]):
        np.testing.assert_allclose(
            got[row], expected_scores("lira-online", phi, keep, target), rtol=1e-9
        )
    options = {"signal": "softmax", "temperature": 1, "gamma": 1}
    derived = miakit.score("rmia", keep=keep, tokens=only, **options)
    given_logits = miakit.score("rmia", logits, np.zeros(RECORDS, int), keep, **options)
    np.testing.assert_allclose(derived, given_logits, rtol=1e-12)
    # given beside the tokens, the logits are read as they are
    lower = mean - 0.5
    shifted = np.stack([lower, np.log(-np.expm1(lower))], axis=-1)[:, :, None, :]
    with_logits = miakit.score("loss", shifted, keep=keep, tokens=only)
    np.testing.assert_allclose(with_logits, mean - 0.5, rtol=1e-12)


def test_a_mean_token_logprob_of_zero_is_capped_as_the_query_caps_it():
    given, keep, real, _ = token_arrays()
    logprobs = given["logprobs"].copy()
    logprobs[:, 0, : real[0]] = 0.0  # every token certain: p̄ = 1, log(1 − p̄) would be −inf
    got = miakit.score("lira-online", keep=keep, tokens={"logprobs": logprobs})
    assert np.isfinite(got).all()
    loss = miakit.score("loss", keep=keep, tokens={"logprobs": logprobs})
    assert loss[0, 0] == pytest.approx(tokens.MAX_MEAN_LOGPROB, rel=1e-3)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A tiny GPT audit (4 models, 1 epoch, 40 records, a ReCaLL prefix): its RunDir and the
    records' token ids."""
    root = tmp_path_factory.mktemp("text")
    attacks = [*TEXT_ATTACKS[:-1], "loss", "lira-online"]  # lm-ratio needs an hf base model
    config = recall_config(root, "train.epochs=1", f"attacks=[{', '.join(attacks)}]")
    run = RunDir(root / "run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models train faster on one thread than on two contended
    try:
        pipeline.audit(config, run, log=None)
    finally:
        torch.set_num_threads(threads)
    lines = Path(config.data.path).read_text().splitlines()
    return run, tokens.encode(lines, max(len(t.encode()) for t in lines) + 2)


def test_score_on_a_runs_token_files_is_what_its_attack_stage_wrote(text_run):
    run, ids = text_run
    keep = load_npy(run.keep)
    names = {"logprobs": "token_logprobs", "mu": "token_mu", "sigma": "token_sigma"}
    names |= {"logprobs_lower": "token_logprobs_lower", "logprobs_recall": tokens.RECALL_STAT}
    given = {
        key: [load_npy(run.token_stat(m, stat), mmap=True) for m in range(len(keep))]
        for key, stat in names.items()
    }
    given["zlib_bytes"] = tokens.zlib_bytes(ids)
    for name in TEXT_ATTACKS[:-1]:
        stored = load_npy(run.scores(name))
        np.testing.assert_array_equal(miakit.score(name, keep=keep, tokens=given), stored)
    logits = [load_npy(run.logits(m)) for m in range(len(keep))]
    for name in ("loss", "lira-online"):
        stored = load_npy(run.scores(name))
        np.testing.assert_array_equal(miakit.score(name, logits, keep=keep, tokens=given), stored)
        # derived from the float32 token log-probs: the query's float64 mean, stored in
        # float32, up to rounding (loss: log p̄ itself; LiRA divides by the references' σ)
        derived = miakit.score(name, keep=keep, tokens=given)
        np.testing.assert_allclose(derived, stored, rtol=1e-6, atol=1e-5 * np.ptp(stored))


def _bad(key, change):
    def call():
        given, keep, _, _ = token_arrays()
        given[key] = change(given[key])
        return miakit.score("min-k-plus-plus", keep=keep, tokens=given)

    return call


def _with_nan(array, index):
    out = np.array(array, dtype=np.float64)
    out[index] = np.nan
    return out


def _with_value(array, index, value):
    out = np.array(array, dtype=np.float64)
    out[index] = value
    return out


def _call(name, *args, tokens_change=None, **kwargs):
    def call():
        given, keep, _, _ = token_arrays()
        arrays = tokens_change(given) if tokens_change else given
        return miakit.score(name, *args, keep=keep, tokens=arrays, **kwargs)

    return call


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: miakit.score(
                "min-k", np.zeros((8, 24, 1, 2)), np.zeros(24, int), token_arrays()[1]
            ),
            "min-k reads a causal language model's per-token outputs: give them as tokens=",
        ),
        (lambda: miakit.score("lm-loss", tokens={"logprobs": 0}), "keep is required"),
        (lambda: miakit.score("loss", keep=token_arrays()[1]), "logits is required"),
        (
            _call(
                "zlib", tokens_change=lambda g: {k: v for k, v in g.items() if k != "zlib_bytes"}
            ),
            "zlib reads tokens['zlib_bytes'] (int [N], each record's zlib-compressed length in "
            "bytes), which is missing",
        ),
        (
            _call("min-k-plus-plus", tokens_change=lambda g: {"logprobs": g["logprobs"]}),
            "min-k-plus-plus reads tokens['mu']",
        ),
        (
            _call("lm-loss", tokens_change=lambda g: {**g, "token_logprobs": g["logprobs"]}),
            "tokens has an unknown key 'token_logprobs'; the keys are logprobs, mu,",
        ),
        (_call("lm-loss", tokens_change=lambda g: g["logprobs"]), "tokens must be a mapping"),
        (_bad("logprobs", lambda a: a[0]), "tokens['logprobs'] must be an array [M, N, L − 1]"),
        (_bad("mu", lambda a: a[:-1]), "tokens['mu'] holds 7 models, but keep has 8 rows"),
        (
            _bad("sigma", lambda a: a[:, :-1]),
            "tokens['sigma'] of model 0 must be floats [N, L − 1] = (24, L − 1), got float64 "
            "of shape (23, 10)",
        ),
        (
            _bad("logprobs", lambda a: np.zeros(a.shape, dtype=int)),
            "tokens['logprobs'] of model 0 must be floats",
        ),
        (
            _bad("mu", lambda a: a[..., :-1]),
            "tokens['mu'] of model 0 must have shape [N, L − 1] = (24, 10) like "
            "tokens['logprobs'], got (24, 9)",
        ),
        (
            _bad("logprobs", lambda a: -a),
            "tokens['logprobs'] of model 0 must be ≤ 0, got",
        ),
        (_bad("sigma", lambda a: -a), "tokens['sigma'] of model 0 must be ≥ 0"),
        (
            _bad("logprobs", lambda a: _with_value(a, (2, 3, 0), -np.inf)),
            "tokens['logprobs'] of model 2 holds infinity (record 3, token 0); NaN marks padding",
        ),
        (
            _bad("mu", lambda a: _with_nan(a, (1, 0, 0))),
            "tokens['mu'] of model 1 has NaN at record 0, token 0, where tokens['logprobs'] of "
            "model 0 has a token: the padding must match",
        ),
        (
            _bad("logprobs", lambda a: _with_value(a, (3, *np.argwhere(np.isnan(a[0]))[0]), -1.0)),
            "tokens['logprobs'] of model 3 has a value at record",
        ),
        (
            _bad("logprobs", lambda a: _with_nan(a, (slice(None), 5))),
            "tokens['logprobs'] is all padding (NaN) at record 5",
        ),
        (
            _bad("logprobs_lower", lambda a: _with_nan(a, (0, 7))),
            "tokens['logprobs_lower'] of model 0 is all padding (NaN) at record 7",
        ),
        (
            _bad("zlib_bytes", lambda a: a.astype(float)),
            "tokens['zlib_bytes'] must be integers [N] = (24,), got float64 of shape (24,)",
        ),
        (_bad("zlib_bytes", lambda a: a * 0), "tokens['zlib_bytes'] must be compressed lengths"),
        (
            _bad("reference_logprobs", lambda a: a[None]),
            "tokens['reference_logprobs'] must be floats [N, L − 1] = (24, 10), got float64 "
            "of shape (1, 24, 10)",
        ),
        (
            _call("lm-loss", np.zeros((8, 24, 1, 2)), np.ones(24, int)),
            "labels must be 0 with tokens",
        ),
        (
            _call("loss", np.zeros((8, 24, 1, 3))),
            "logits with tokens must be the sequence signal [M, N, 1, 2]",
        ),
        (_call("rmia"), "attack_options.rmia: on text records set signal: softmax"),
        (_call("confidence"), "attacks: confidence does not apply to a language model's text"),
        (_call("lm-loss", output="label"), "output must be 'logits' with tokens"),
    ],
)
def test_bad_tokens_get_one_clear_error_naming_the_argument(call, message):
    with pytest.raises(miakit.MiakitError, match=re.escape(message)):
        call()


def test_signals_without_a_statistic_an_attack_reads_say_which():
    given, keep, _, _ = token_arrays()
    signals = Signals(
        [np.zeros((RECORDS, 1, 2))] * MODELS,
        np.zeros(RECORDS, dtype=np.int64),
        keep,
        tokens=TokenSignals(list(given["logprobs"])),
    )
    reason = make_attack("min-k-plus-plus").unavailable(signals)
    assert reason == "min-k-plus-plus reads the per-token mu, which these signals lack"
    assert make_attack("min-k").unavailable(signals) is None
    assert "query.recall_prefix" in make_attack("recall").unavailable(signals)
    assert "reference LM" in make_attack("lm-ratio").unavailable(signals)
