"""The out-of-distribution false-positive study (evaluate.ood): how often attacks call "member"
records that no model trained on and that lie far from the pool (another data set, permuted,
scaled or noise inputs).

Every model is queried on each set once (kept in <run>/ood/<set>/ with a content hash of the
set's settings and of when each model was trained and with which query settings, so that a
retrained model is queried again). Each attack is fitted once on the pool (`Attack.fit`) and
scores each set as query-only records (`Fit.score_queries`): it learns nothing from them, so the
pool's scores are unchanged. Per target and FPR x, the threshold that gives FPR x on the target's own non-members is
applied to the set: the share called member is the OOD false-positive rate. A sound attack keeps
it at or below x; an attack that flags whatever looks unusual does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from miakit.attacks import make_attack
from miakit.config import AuditConfig, OODConfig
from miakit.data.ood import make_ood
from miakit.errors import MiakitError
from miakit.evaluate.calibration import ood_false_positive_rates
from miakit.evaluate.metric_key import MetricKey
from miakit.plan import Plan, evaluation_design
from miakit.seeding import rng
from miakit.signals import Signals
from miakit.store import RunDir, content_hash, load_npy, save_json, save_npy

#: (plan, run, x) → logits [M, K, A, C] of every model of the run on records x
QueryAll = Callable[[Plan, RunDir, np.ndarray], np.ndarray]


def ood_logits(
    plan: Plan, run: RunDir, spec: OODConfig, query_all: QueryAll
) -> tuple[np.ndarray, np.ndarray]:
    """The set's labels [K] and every model's logits on it [M, K, A, C], queried once."""
    ood = make_ood(
        spec.kind,
        plan.pool,
        spec.count,
        rng(plan.config.seed, f"ood-{spec.label}"),
        source=spec.source,
        data_dir=plan.config.data.data_dir,
        factor=spec.factor,
    )
    folder = run.root / "ood" / spec.label
    expected = content_hash(
        {
            "spec": spec.model_dump(mode="json"),
            "seed": plan.config.seed,
            "models": [_model_version(run, m) for m in range(len(plan.keep))],
        }
    )
    try:
        current = json.loads((folder / "ood.json").read_text())["hash"] == expected
    except (OSError, ValueError, KeyError):
        current = False
    if not current:
        # removed first, written last: a crash never leaves old logits that look current
        (folder / "ood.json").unlink(missing_ok=True)
        save_npy(folder / "logits.npy", query_all(plan, run, ood.x))
        save_json(folder / "ood.json", {"hash": expected, "name": ood.name, "count": len(ood.y)})
    return ood.y, load_npy(folder / "logits.npy", mmap=True)


def _model_version(run: RunDir, m: int) -> list:
    """What changes whenever model m is retrained or re-queried, even with the same settings."""
    meta = run.read_meta(m) or {}
    return [meta.get("query_hash"), meta.get("finished_at")]


def ood_study(
    plan: Plan, run: RunDir, config: AuditConfig, attacks: Sequence[str], query_all: QueryAll
) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """Per attack, `ood_fpr@fpr=x,set=<label>` → one value per target; and the attacks that
    cannot score query-only records (e.g. LT-IQR: no loss trace exists for them), with why."""
    pool_signals = Signals.from_run(run, config.query.output)
    design = evaluation_design(run, config, pool_signals.num_models)
    records = (
        np.arange(pool_signals.num_records)
        if design.eval_records is None
        else np.flatnonzero(design.eval_records)
    )
    results: dict[str, dict[str, list[float]]] = {a: {} for a in attacks}
    skipped: dict[str, str] = {}
    sets = [(spec, *ood_logits(plan, run, spec, query_all)) for spec in config.evaluate.ood]
    for name in attacks:
        attack = make_attack(name, config.attack_options.get(name))
        try:  # fitted once on the pool; every set is then "score these records"
            fit = attack.fit(pool_signals, design.targets, design.references, design.eval_records)
            per_set = [(spec, fit.score_queries(list(x), y)) for spec, y, x in sets]
            pool_scores = fit.scores
        except MiakitError as exc:
            skipped[name] = str(exc)
            results.pop(name, None)
            continue
        for spec, query_scores in per_set:
            rates = ood_false_positive_rates(
                query_scores,
                pool_scores[:, records],
                pool_signals.keep[:, records],
                design.targets,
                config.evaluate.fprs,
            )
            results[name] |= {
                str(replace(MetricKey.parse(key), set=spec.label)): v for key, v in rates.items()
            }
    return results, skipped
