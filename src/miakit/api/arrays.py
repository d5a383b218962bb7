"""The public API on arrays, without a run directory: `score`, `evaluate` and `attacks`.

They are the engine the CLI runs: `score` goes through `pipeline.score_signals` (what
`miakit attack` writes to scores/<attack>.npy), `evaluate` through `evaluate.metrics.summarize`
and `long_rows` (what `miakit evaluate` writes to metrics.json and metrics.csv), and `attacks`
lists the registry `miakit attacks list` prints.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from miakit.api.text import text_inputs
from miakit.attacks import ATTACKS, make_attack
from miakit.config import EvaluateConfig
from miakit.errors import MiakitError
from miakit.evaluate.metrics import long_rows, summarize
from miakit.evaluate.thresholds import PRIORS
from miakit.pipeline import score_signals
from miakit.signals import Signals

#: The FPRs `evaluate` reads TPR at by default: `evaluate.fprs`'s defaults.
FPRS: tuple[float, ...] = tuple(EvaluateConfig().fprs)


def score(
    attack: str,
    logits: np.ndarray | Sequence[np.ndarray] | None = None,
    labels: np.ndarray | None = None,
    keep: np.ndarray | None = None,
    targets: Sequence[int] | None = None,
    *,
    tokens: Mapping[str, Any] | None = None,
    references: Sequence[int] | None = None,
    records: np.ndarray | None = None,
    traces: np.ndarray | Sequence[np.ndarray] | None = None,
    features: np.ndarray | None = None,
    output: str = "logits",
    **options: Any,
) -> np.ndarray:
    """Membership scores of each target model's records by one attack: higher = more likely a
    member (trained on by that target). The engine `miakit attack` runs.

    Args:
        attack: a registered attack's name (`miakit.attacks()`), e.g. "lira-online", "rmia".
        logits: the M models' raw outputs (pre-softmax logits) on the N records under A query
            augmentations: an array [M, N, A, C], or a list of M arrays (or memory-maps, e.g.
            `numpy.load(path, mmap_mode="r")`) [N, A, C]; read in chunks of records, in float64.
            With `tokens` it may be left out: it is then derived from tokens["logprobs"] as the
            query derives a causal LM's sequence signal, [M, N, 1, 2] = [log p̄, log(1 − p̄)]
            with p̄ = exp(mean token log p) over each record's real next tokens, log p̄ capped
            at −1e-12; given with `tokens`, it must be that view (a run's logits.npy).
        labels: int [N], the records' classes in [0, C); with `tokens`, default all 0 (the
            class of p̄), the only label a language model's record has.
        keep: bool [M, N], the keep matrix: keep[m, n] when model m trained on record n (a
            member). Every record must be OUT for some model. Required (a keyword where
            logits and labels are left out).
        targets: the models to attack (rows of `keep`), default all M. Each is scored with every
            other model as a reference (leave-one-out), unless `references` names them.
        tokens: a causal language model's per-token outputs on text records, for the attacks
            that read them (lm-loss, zlib, lowercase, min-k, min-k-plus-plus, recall, lm-ratio)
            and, derived into `logits`, for loss, LiRA and RMIA: a mapping with
            "logprobs" (required), log p of each actual next token, an array [M, N, L − 1] or a
            list of M arrays [N, L − 1] (float, NaN at padding: the mask, every record with a
            real token; values ≤ 0), and as the attack reads them "mu" and "sigma" (Min-K%++:
            the mean and standard deviation of log p over the model's next-token distribution,
            same shape and padding), "logprobs_lower" (lowercase: log p of each next token of
            the record lowercased, its own padding), "logprobs_recall" (recall: log p of each
            actual next token with the ReCaLL prefix before the record, the same padding),
            "zlib_bytes" (zlib: int [N], each record's zlib-compressed length in bytes) and
            "reference_logprobs" (lm-ratio: a reference LM's log p of each actual next token,
            one array [N, L − 1] with the same padding). What `miakit query` writes per model
            as token_logprobs.npy, token_mu.npy, token_sigma.npy, token_logprobs_lower.npy and
            token_logprobs_recall.npy.
        references: the reference (shadow) models every target is scored against; default None,
            leave-one-out.
        records: bool [N], the records to score (default all); the others get NaN and need no
            reference model.
        traces: loss traces, [M, E+1, N] or M arrays [E+1, N] (the record's loss before training
            and after each epoch), for `lt-iqr`.
        features: the records' features [N, ...], for attacks that read them (`qmia`).
        output: what the models' API returns (`query.output`): "logits", "probabilities",
            "rounded:d", "top-k:k" or "label"; attacks see the logits restricted to it. Only
            "logits" with `tokens`.
        **options: the attack's options (`attack_options.<attack>` of a config; their names,
            defaults and descriptions in `miakit.attacks()`), e.g. `offline_tail="two-sided"`.

    Returns:
        float64 [T, N]: row i scores target `targets[i]`'s records.

    Raises:
        MiakitError: an unknown attack, a bad option (named as attack_options.<attack>.<key>),
            arrays of the wrong shape or type, NaN or infinite logits, a record never OUT, a
            record without the reference models the attack needs; an attack reading per-token
            outputs without `tokens`, or without the key it reads; tokens of the wrong shape,
            dtype or sign, with infinity, or with padding that does not match
            tokens["logprobs"]'s; with `tokens`, an attack that does not apply to text records
            (as plan refuses it; RMIA needs signal="softmax", temperature=1, gamma=1);
            AttackUnavailable (a MiakitError) where the attack cannot run on these inputs (e.g.
            LiRA on labels alone).

    Each attack follows its paper (`miakit.attacks()`: e.g. LiRA, Carlini et al., IEEE S&P
    2022; RMIA, Zarifzadeh et al., ICML 2024; Min-K% Prob, Shi et al., ICLR 2024); leave-one-out
    over all targets fits the references' per-record statistics once (README, "Evaluation").
    """
    instance = make_attack(attack, options)
    if keep is None:
        raise MiakitError(
            "keep is required: the bool keep matrix [M, N] (keep[m, n]: model m trained on "
            "record n)"
        )
    keep = np.asarray(keep)
    token_signals = None
    if tokens is not None:
        logits, labels, token_signals = text_inputs(
            instance, options, tokens, logits, labels, keep, output
        )
    elif instance.needs_tokens:
        raise MiakitError(
            f"{attack} reads a causal language model's per-token outputs: give them as "
            "tokens={'logprobs': [M, N, L − 1], ...}"
        )
    if logits is None or labels is None:
        missing = "logits" if logits is None else "labels"
        raise MiakitError(f"{missing} is required (it may be left out only with tokens)")
    if isinstance(logits, np.ndarray) and logits.ndim != 4:
        raise MiakitError(
            f"logits must be an array [M, N, A, C] (or a list of M arrays [N, A, C]), got shape "
            f"{logits.shape}; one query view is A = 1, e.g. logits[:, :, None, :]"
        )
    signals = Signals(
        list(logits),
        np.asarray(labels),
        keep,
        None if traces is None else list(traces),
        output=output,
        features=None if features is None else np.asarray(features),
        tokens=token_signals,
    )
    chosen = list(range(signals.num_models)) if targets is None else [int(t) for t in targets]
    for name, given in (("targets", chosen), ("references", references or [])):
        bad = [m for m in given if not 0 <= int(m) < signals.num_models]
        if bad:
            raise MiakitError(
                f"{name} must be model indices in [0, {signals.num_models}), got {bad[0]}"
            )
    if not chosen:
        raise MiakitError("targets is empty: name at least one model to attack")
    if records is not None:
        records = np.asarray(records)
        if records.dtype != np.bool_ or records.shape != (signals.num_records,):
            raise MiakitError(
                f"records must be a bool mask [N] = ({signals.num_records},), got "
                f"{records.dtype} of shape {records.shape}"
            )
    refs = None if references is None else [int(m) for m in references]
    return score_signals(instance, signals, chosen, refs, records)


def evaluate(
    scores: np.ndarray | Mapping[str, np.ndarray],
    keep: np.ndarray,
    targets: Sequence[int] | None = None,
    *,
    fprs: Sequence[float] = FPRS,
    priors: Sequence[float] = PRIORS,
) -> pd.DataFrame:
    """Model-level figures of membership scores: the rows `miakit evaluate` writes to
    metrics.csv (and metrics.json).

    Args:
        scores: float [T, N], higher = more likely member (`score`'s output); or a mapping
            attack name → such an array, evaluated each.
        keep: bool [M, N], the keep matrix (keep[m, n]: model m trained on record n), or [T, N].
        targets: the rows of `keep` the score rows belong to, default 0 … T−1.
        fprs: false-positive rates (fractions in (0, 1)) to read TPR, false positives and the
            shadow-calibrated figures at; default `evaluate.fprs`'s (1%, 0.1%, 0.01%, 0.001%).
        priors: shares of members among the records an attacker tests (fractions in (0, 1)),
            for the PPV rows.

    Returns:
        A DataFrame, one row per figure (an "attack" column first when `scores` is a mapping):
        metric (auc, balanced_accuracy, tpr@fpr=x, fp@fpr=x; with two targets or more
        shadow_tpr, shadow_fpr, ppv and shadow_ppv at each FPR and prior), mean and std
        (population) over targets, n_targets, ci_low and ci_high (AUC and TPR: the mean over
        targets of each target's 95% interval over its records, DeLong for AUC, order statistics
        with Clopper–Pearson for TPR), and not_measurable: the reason where a figure at FPR x
        needs more than the smallest target's non-members (at least 1/x), else missing (NaN), as
        in metrics.csv; a figure not measurable has a missing mean. Rates are fractions, fp a
        count.

    Raises:
        MiakitError: shapes that do not match, keep not bool, NaN or infinite scores, a target
            without members or non-members, FPRs or priors outside (0, 1).

    Conventions (README, "Evaluation"): the full ROC, TPR at FPR x the largest TPR whose FPR ≤ x,
    AUC by the trapezoid rule; shadow calibration and PPV as the realistic-LiRA study (Carlini et
    al. 2022, Sec. 6); intervals tested by simulation in tests/test_evaluate_intervals.py.
    """
    named = dict(scores) if isinstance(scores, Mapping) else {None: scores}
    if not named:
        raise MiakitError("scores is empty: give an array [T, N] or a mapping attack → array")
    keep = np.asarray(keep)
    if keep.dtype != np.bool_ or keep.ndim != 2:
        raise MiakitError(
            f"keep must be a bool matrix [M, N], got {keep.dtype} of shape {keep.shape}"
        )
    for x, what in [*((x, "fprs") for x in fprs), *((p, "priors") for p in priors)]:
        if not 0 < x < 1:
            raise MiakitError(f"{what} must be fractions strictly between 0 and 1, got {x}")
    if not fprs:
        raise MiakitError("fprs is empty: give at least one false-positive rate")
    summaries = {}
    for name, values in named.items():
        values = np.asarray(values, dtype=np.float64)
        rows = list(range(len(values))) if targets is None else [int(t) for t in targets]
        label = "scores" if name is None else f"scores[{name!r}]"
        if values.ndim != 2 or values.shape[1] != keep.shape[1] or len(rows) != len(values):
            raise MiakitError(
                f"{label} must have shape [T, N] = ({len(rows)}, {keep.shape[1]}) for keep of "
                f"shape {keep.shape}, got {values.shape}"
            )
        if any(not 0 <= t < len(keep) for t in rows):
            raise MiakitError(f"targets must be rows of keep, in [0, {len(keep)})")
        if not np.isfinite(values).all():
            raise MiakitError(
                f"{label} holds NaN or infinity; evaluate only the scored records, e.g. "
                "scores[:, mask] with keep[:, mask]"
            )
        for t in rows:
            if keep[t].all() or not keep[t].any():
                raise MiakitError(
                    f"target {t} has {'no non-members' if keep[t].all() else 'no members'}: "
                    "its ROC is undefined"
                )
        summaries[name] = summarize(values, keep, rows, list(fprs), priors=tuple(priors))
    table = pd.DataFrame(long_rows(summaries))
    return table.drop(columns="attack") if None in summaries else table


@dataclass(frozen=True)
class AttackOption:
    """One option of an attack (`attack_options.<attack>.<name>` in a config, a keyword of
    `score`): its default and what it does."""

    name: str
    default: Any
    description: str


@dataclass(frozen=True)
class AttackInfo:
    """A registered attack: its name (for `score`, `attacks:` and --attacks), what it scores
    and the paper it follows (`what`), and its options."""

    name: str
    what: str
    options: tuple[AttackOption, ...]


def attacks() -> list[AttackInfo]:
    """Every registered membership inference attack, in the registry's order: name, what it
    scores and the paper it follows (the first line of its docstring, else its module's), and its
    options with their defaults and descriptions, as `miakit attacks list` prints them.

    Returns:
        A list of AttackInfo (name, what, options: AttackOption(name, default, description)).
    """
    infos = []
    for name, cls in ATTACKS.items():
        doc = cls.__doc__ or sys.modules[cls.__module__].__doc__ or ""
        what = doc.strip().splitlines()[0] if doc.strip() else ""
        options = tuple(
            AttackOption(option, field.default, field.description or "")
            for option, field in cls.Config.model_fields.items()
        )
        infos.append(AttackInfo(name, what, options))
    return infos
