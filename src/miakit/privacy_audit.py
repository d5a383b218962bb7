"""The DP-audit stage: empirical ε lower bounds of a run's canaries, written to audit.json.

Reads scores/<attack>.npy, keep.npy and the canaries of run.yaml's dp_audit section; for each
attack writes, in audit.json:

- `one_run`: the one-run bound (Steinke, Nasr and Jagielski 2023) of each target on its canaries,
  with the guess counts k± chosen on the other targets' canaries (their scores and keep bits, never
  the audited target's), or, with a single target, on half of its canaries while the other half is
  audited. Each target's bound is computed at β/T (Bonferroni), so `epsilon_lower`, their maximum,
  holds at confidence 1 − β for the run as a whole.
- `many_runs`: the threshold bound on ε and on Gaussian-DP μ (miakit.evaluate.dp_audit
  .threshold_audit) over the canaries of all targets, the threshold chosen on the first half of
  the targets and the bound computed on the second (needs two targets or more). Its Clopper–Pearson
  intervals treat every (target, canary) pair as an independent trial, which canaries sharing a
  model are not strictly: the one-run bound is the rigorous one, the many-run figure indicative.
- the accountant's ε of the targets (the largest, from their meta.json), when trained with DP-SGD.
- `confidence`: 1 − β − redraw_slack(M, m), the confidence the one-run bounds hold at once.
"""

from __future__ import annotations

import math

import numpy as np

from miakit.chain import scores_skipped
from miakit.config import AuditConfig
from miakit.data.canaries import redraw_slack
from miakit.errors import MiakitError
from miakit.evaluate.dp_audit import choose_guess_counts, one_run_audit, threshold_audit
from miakit.plan import configured_canaries, evaluation_design
from miakit.store import RunDir, load_npy, save_json


def audit_json(run: RunDir):
    return run.root / "audit.json"


def audit_dp(run: RunDir, config: AuditConfig) -> dict:
    """Compute every configured attack's DP-audit bounds; writes and returns audit.json's content.

    Raises MiakitError when the run has no canaries, or an attack's scores are missing or of the
    wrong shape.
    """
    keep = load_npy(run.keep)
    canaries = configured_canaries(config, keep.shape[1])
    if len(canaries) == 0:
        raise MiakitError(
            "the run has no canaries: set dp_audit.canaries.count and plan it again "
            "(e.g. `miakit audit --set dp_audit.canaries.count=500`)"
        )
    design = evaluation_design(run, config, len(keep))
    audit = config.dp_audit
    delta = config.defences.dp.delta if audit.delta is None else audit.delta
    members = keep[design.targets][:, canaries]
    results, skipped = {}, {}
    for name in audit.attacks or config.attacks:
        reason = scores_skipped(run, name)
        if reason is not None:  # it cannot run on the query.output (no scores)
            skipped[name] = reason
            continue
        path = run.scores(name)
        if not path.is_file():
            raise MiakitError(f"no scores for {name!r} in {run.root}; run `miakit attack` first")
        scores = load_npy(path)
        if scores.shape != (len(design.targets), keep.shape[1]):
            raise MiakitError(f"{path} has shape {scores.shape}; rerun `miakit attack`")
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
    save_json(audit_json(run), out)
    return out


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
        many = threshold_audit(
            scores[:half], members[:half], scores[half:], members[half:], delta, beta
        )
        result["many_runs"] = {
            k: (None if isinstance(v, float) and math.isinf(v) else v)
            for k, v in many.as_dict().items()
        }
    return result


def _accountant_epsilon(run: RunDir, targets) -> float | None:
    epsilons = [((run.read_meta(t) or {}).get("dp") or {}).get("epsilon") for t in targets]
    epsilons = [e for e in epsilons if e is not None]
    return max(epsilons) if epsilons else None
