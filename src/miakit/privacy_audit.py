"""The DP-audit stage: empirical ε lower bounds of a run's canaries, written to audit.json.

Reads scores/<attack>.npy, keep.npy and the canaries of run.yaml's dp_audit section; for each
attack writes, in audit.json:

- `one_run`: the one-run bound (Steinke, Nasr and Jagielski 2023) of each target on its canaries,
  with the guess counts k± chosen on the other targets' canaries (their scores and keep bits, never
  the audited target's), or, with a single target, on half of its canaries while the other half is
  audited. Each target's bound is computed at β/T (Bonferroni), so `epsilon_lower`, their maximum,
  holds at confidence 1 − β for the run as a whole.
- `many_runs` (needs two targets or more): the guess fractions chosen on the first half of the
  targets, the bound computed on the second half's (target, canary) pairs pooled
  (miakit.evaluate.dp_audit.many_run_audit: Steinke, Nasr and Jagielski's theorem over the
  pairs, valid however one model's canary scores are correlated), at confidence 1 − β; its
  `assumption` says what it rests on. Under `independent_trials`, the threshold bounds on ε and
  on Gaussian-DP μ (threshold_audit) on the same halves, whose Clopper–Pearson intervals count
  every pair as an independent trial, which canaries sharing a model are not: labelled so, and
  indicative only.
- the accountant's ε of the targets (the largest, from their meta.json), when trained with DP-SGD.
- `confidence`: 1 − β − redraw_slack(M, m), the confidence the one-run bounds hold at once.
- `exposure`, with secret canaries (text records, dp_audit.canaries.kind secret): each target's
  exposure of each canary (miakit.evaluate.exposure, the Secret Sharer's), its mean over the
  canaries the target trained on and over the others, and the bounds above with exposure as
  the canaries' score (`bounds`); the same per (target, canary) in tables/exposure.parquet and
  .csv, written with audit.json. Its `method` says how: `enumeration` (exact ranks among every
  candidate) or `skew-normal` (estimated from a skew-normal fitted to `sampled_alternatives`
  alternatives, each target's fit in `skew_normal_fits`).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from miakit.chain import (
    audit_inputs,
    audit_json_path,
    audit_stale,
    inputs_record,
    read_record,
    scores_skipped,
    scores_stale,
)
from miakit.config import AuditConfig
from miakit.data.canaries import redraw_slack
from miakit.errors import MiakitError
from miakit.evaluate.dp_audit import (
    choose_guess_counts,
    many_run_audit,
    one_run_audit,
    threshold_audit,
)
from miakit.evaluate.exposure import estimated_exposure, exposure
from miakit.evaluate.tables import TABLES_DIR, write_tables
from miakit.plan import (
    configured_alternatives,
    configured_canaries,
    configured_secrets,
    evaluation_design,
    has_secrets,
)
from miakit.store import RunDir, clear_leftovers, document_record, load_npy, save_json
from miakit.tokens import SECRET_STAT

MANY_RUNS_ASSUMPTION = (
    "each (target, canary) keep bit an independent fair coin (up to the stated confidence), and "
    "the scores computed without the evaluation targets' keep bits; attacks whose references "
    "are the other models (leave-one-out) read those bits as reference labels, which the theorem "
    "does not cover"
)
INDEPENDENT_TRIALS_ASSUMPTION = (
    "every (target, canary) pair an independent trial, which canaries sharing a model are not: "
    "indicative only"
)


def audit_dp(run: RunDir, config: AuditConfig) -> dict:
    """Compute every audited attack's DP-audit bounds; writes and returns audit.json's content
    (with its record of inputs, miakit.chain.audit_inputs). When audit.json is current for
    these scores and settings, nothing is written and its content is returned.

    Raises MiakitError when the run has no canaries, or an attack's scores are missing, stale or
    of the wrong shape (naming `miakit attack`).
    """
    keep = load_npy(run.keep)
    canaries = configured_canaries(config, keep.shape[1])
    if len(canaries) == 0:
        raise MiakitError(
            "the run has no canaries: set dp_audit.canaries.count and plan it again "
            "(e.g. `miakit audit --set dp_audit.canaries.count=500`)"
        )
    design = evaluation_design(run, config, len(keep))
    names = audited_attacks(config)
    for name in names:
        reason = scores_stale(run, config, name, design)
        if reason is not None:
            raise MiakitError(
                f"the scores of {name!r} in {run.root} are not current ({reason}); run "
                f"`miakit attack {run.root} --attacks {name}` first"
            )
    path = audit_json_path(run)
    clear_leftovers(run.root)
    if audit_stale(run, config, names, design) is None:
        return json.loads(path.read_text())
    inputs, files = audit_inputs(run, config, names, design, read_record(path))
    audit = config.dp_audit
    delta = config.defences.dp.delta if audit.delta is None else audit.delta
    members = keep[design.targets][:, canaries]
    results, skipped = {}, {}
    for name in names:
        reason = scores_skipped(run, name)
        if reason is not None:  # it cannot run on the query.output (no scores)
            skipped[name] = reason
            continue
        scores = load_npy(run.scores(name))
        if scores.shape != (len(design.targets), keep.shape[1]):
            raise MiakitError(f"{run.scores(name)} has shape {scores.shape}; rerun `miakit attack`")
        results[name] = _audit_scores(scores[:, canaries], members, delta, audit.beta)
    out = {
        "canaries": {"count": len(canaries), "kind": audit.canaries.kind},
        "canary_records": canaries.tolist(),
        "targets": list(design.targets),
        "accountant_epsilon": _accountant_epsilon(run, design.targets),
        "delta": delta,
        "beta": audit.beta,
        # the keep bits' distance from fair coins (data.canaries.canary_keep) lowers confidence
        "confidence": 1 - audit.beta - redraw_slack(len(keep), len(canaries)),
        "attacks": results,
        "skipped": skipped,
    }
    written = []
    if has_secrets(config):
        out["exposure"] = _exposure(run, config, design.targets, members, delta)
        table = exposure_table(out["exposure"], design.targets, canaries, members)
        written = write_tables(run.root / TABLES_DIR, {"exposure": table})
        written += [p.with_suffix(".csv") for p in written]
    else:  # from an earlier config with secret canaries: stale now
        remove_exposure_tables(run)
    # audit.json holds its own record, as metrics.json does, and the hash of its content and of
    # the tables written with it
    record = inputs_record(inputs, files) | document_record(out, run.root, written)
    save_json(path, out | record)
    return out | record


def audited_attacks(config: AuditConfig) -> list[str]:
    """The attacks whose scores the DP audit reads: dp_audit.attacks, else every attack."""
    return list(config.dp_audit.attacks or config.attacks)


def check_audit_current(run: RunDir, config: AuditConfig) -> None:
    """Where the run has an audit.json, it must be current (else: the command that makes it so).

    Raises MiakitError naming `miakit audit-dp` when audit.json's scores, keep bits, targets'
    meta.json or dp_audit settings changed since it was computed.
    """
    if not audit_json_path(run).is_file():
        return
    design = evaluation_design(run, config, len(load_npy(run.keep, mmap=True)))
    reason = audit_stale(run, config, audited_attacks(config), design)
    if reason is not None:
        raise MiakitError(
            f"{audit_json_path(run)} is stale ({reason}); run `miakit audit-dp {run.root}` "
            "to make it current"
        )


def _audit_scores(scores: np.ndarray, members: np.ndarray, delta: float, beta: float) -> dict:
    """scores, members: [T, m] canary scores and keep bits of the T targets."""
    num_targets, m = scores.shape
    per_target = []
    for t in range(num_targets):
        if num_targets > 1:
            others = np.arange(num_targets) != t
            select = (scores[others], members[others])
            audited = (scores[t], members[t])
        else:
            half = m // 2
            select = (scores[t, :half], members[t, :half])
            audited = (scores[t, half:], members[t, half:])
        f_pos, f_neg = choose_guess_counts(*select, beta / num_targets)
        size = len(audited[0])
        k_pos = round(f_pos * size)
        k_neg = min(round(f_neg * size), size - k_pos)
        per_target.append(one_run_audit(*audited, k_pos, k_neg, delta, beta / num_targets))
    best = max(per_target, key=lambda a: a.epsilon_lower)
    result = {
        "one_run": {
            "epsilon_lower": best.epsilon_lower,
            "beta_per_target": beta / num_targets,
            "per_target": [a.as_dict() for a in per_target],
        }
    }
    if num_targets >= 2:
        half = num_targets // 2
        parts = (scores[:half], members[:half], scores[half:], members[half:], delta, beta)
        indicative = threshold_audit(*parts).as_dict()
        result["many_runs"] = many_run_audit(*parts).as_dict() | {
            "assumption": MANY_RUNS_ASSUMPTION,
            "independent_trials": {
                k: (None if isinstance(v, float) and math.isinf(v) else v)
                for k, v in indicative.items()
            }
            | {"assumption": INDEPENDENT_TRIALS_ASSUMPTION},
        }
    return result


def remove_exposure_tables(run: RunDir) -> None:
    """Remove tables/exposure.parquet and .csv (written with an audit.json of secret canaries)."""
    for suffix in (".parquet", ".csv"):
        (run.root / TABLES_DIR / f"exposure{suffix}").unlink(missing_ok=True)


def exposure_table(found: dict, targets, canaries: np.ndarray, members: np.ndarray) -> pd.DataFrame:
    """tables/exposure: one row per (target, canary): the target, the canary's pool record, its
    secret, whether the target trained on it, and its exposure in bits."""
    exposures = np.asarray(found["per_target"])
    return pd.DataFrame(
        {
            "target": np.repeat(np.asarray(targets), len(canaries)),
            "record": np.tile(canaries, len(targets)),
            "secret": np.tile(np.asarray(found["secrets"]), len(targets)),
            "member": members.reshape(-1),
            "exposure_bits": exposures.reshape(-1),
        }
    )


def _exposure(run: RunDir, config: AuditConfig, targets, members: np.ndarray, delta: float) -> dict:
    """The secret canaries' exposure [T, m] under each target (members: their keep bits [T, m]),
    exact where R is enumerated, else estimated from each target's skew-normal fit to the sampled
    alternatives, and its DP-audit bounds. MiakitError naming `miakit query` when a target's
    log-perplexities of R are missing."""
    canaries = config.dp_audit.canaries
    secrets = configured_secrets(config)
    sample = configured_alternatives(config)
    alternatives = 10**canaries.secret_digits - len(secrets)
    rows, fits = [], []
    for t in targets:
        path = run.token_stat(t, SECRET_STAT)
        if not path.is_file():
            raise MiakitError(f"{path} is missing; run `miakit query {run.root}`")
        values = load_npy(path)  # current: the scores audit_dp found current record it
        if sample is None:
            rows.append(exposure(values, secrets))
        else:
            found, fit = estimated_exposure(
                values[: len(secrets)], values[len(secrets) :], alternatives
            )
            rows.append(found)
            fits.append(dict(zip(("shape", "loc", "scale"), fit, strict=True)))
    exposures = np.array(rows)
    out = {
        "secret_format": canaries.secret_format,
        "secret_digits": canaries.secret_digits,
        "candidates": alternatives + 1,
        "max_bits": math.log2(alternatives + 1),
        # enumeration: exact ranks; skew-normal: the Secret Sharer's extrapolation from a sample
        "method": "enumeration" if sample is None else "skew-normal",
        "sampled_alternatives": None if sample is None else len(sample),
        "secrets": secrets.tolist(),
        "per_target": exposures.tolist(),
        "members_mean": float(exposures[members].mean()) if members.any() else None,
        "non_members_mean": float(exposures[~members].mean()) if (~members).any() else None,
        "bounds": _audit_scores(exposures, members, delta, config.dp_audit.beta),
    }
    if fits:  # each target's fit to its sampled alternatives' log-perplexities (bits)
        out["skew_normal_fits"] = fits
    return out


def exposure_method(found: dict) -> str:
    """How audit.json's `exposure` was computed, in words: ranked among every candidate, or
    estimated from a skew-normal fit to the sampled alternatives."""
    if found.get("method", "enumeration") == "enumeration":  # audit.json before sampling: none
        return f"each ranked by log-perplexity among all {found['candidates']} candidates"
    return (
        f"estimated from a skew-normal fit to {found['sampled_alternatives']} sampled "
        f"alternatives of {found['candidates'] - 1}"
    )


def _accountant_epsilon(run: RunDir, targets) -> float | None:
    epsilons = [((run.read_meta(t) or {}).get("dp") or {}).get("epsilon") for t in targets]
    epsilons = [e for e in epsilons if e is not None]
    return max(epsilons) if epsilons else None
