"""The content-hash chain of the files derived from a run's models.

Models are current when their meta.json records the hash of their inputs (plan.py). The same
holds for what is derived from them:

- `scores/<attack>.json` records what `scores/<attack>.npy` was computed from: the attack's name
  and effective options, `query.output` (what the attacks see of the logits), the design (targets,
  references), and the SHA-256 of keep.npy, labels.npy and every model's logits.npy (and
  trace.npy where every model has one; pool.json, whose fingerprint covers the records'
  features, for attacks that read them). An attack that cannot run on the signals writes no
  scores and its record says why (`skipped`); it is current, skipped, while the inputs are;
- `metrics.json` records the SHA-256 of each attack's scores, the evaluate settings, the seed,
  keep.npy, the evaluated records and the attacks skipped, with why, and the hash of its own
  figures and the stamps of the files evaluate wrote with it (metrics.csv, the ROC plots, the
  tables), so that a hand-edited figure or table is stale (`store.document_changed`);
- `audit.json` (the DP audit) records the SHA-256 of each audited attack's scores (or why it was
  skipped), keep.npy and the targets' meta.json (the accountant's ε), with the dp_audit settings,
  δ, the seed and the targets, and the hash of its own content;
- `report.json` records the SHA-256 of metrics.json, audit.json where there is one, run.yaml,
  pool.json, every model's meta.json and the included single-point summaries, and of
  report.html itself.

Each record is `{"inputs": {...}, "inputs_hash": ..., "stamps": {...}}`; `stamps` keeps each input
file's size and times beside its hash, so a file whose size and times are unchanged is not read
again (`store.stamped_hash`). A file is current when its record's inputs hash equals that of the
inputs as they are now; `stale_reason` says in words what changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from miakit.attacks import make_attack
from miakit.config import AuditConfig
from miakit.plan import Design, configured_alternatives, has_secrets, token_stats
from miakit.store import (
    RunDir,
    content_hash,
    document_changed,
    file_stamp,
    load_npy,
    stamped_hash,
)
from miakit.tokens import SECRET_STAT


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON record, or None when it is absent or unreadable (then what it describes is stale)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "inputs_hash" in record else None


def _hashes(files: Mapping[str, Path], record: dict | None) -> dict[str, str | None]:
    """SHA-256 of each file (None where missing); a file whose stamp in `record` still fits
    its size and times is not read."""
    stamps = (record or {}).get("stamps", {})
    return {key: stamped_hash(path, stamps.get(key)) for key, path in files.items()}


def inputs_record(inputs: dict[str, Any], files: Mapping[str, Path]) -> dict:
    """The record of what a file was made from: `inputs`, their hash and the stamps of `files`."""
    return {
        "inputs": inputs,
        "inputs_hash": content_hash(inputs),
        "stamps": {key: file_stamp(path) for key, path in files.items() if path.is_file()},
    }


def output_record(inputs: dict[str, Any], files: Mapping[str, Path], output: Path) -> dict:
    """The record of `output` made from `inputs` (reading `files`); written after `output`."""
    return inputs_record(inputs, files) | {"output": file_stamp(output)}


def stale_reason(record: dict | None, inputs: dict[str, Any]) -> str | None:
    """None when `record` was made from exactly `inputs`; else what differs, in words."""
    if record is None:
        return "it records no inputs: written by an older miakit, or interrupted"
    if record.get("inputs_hash") == content_hash(inputs):
        return None
    before = record.get("inputs", {})
    for key in inputs:
        if before.get(key) != inputs[key]:
            return _difference(key, before.get(key), inputs[key])
    return "its inputs changed since it was computed"


def _difference(key: str, before: Any, now: Any) -> str:
    what = key
    if isinstance(now, dict) and isinstance(before, dict):
        changed = [k for k in now if before.get(k) != now[k]] + [k for k in before if k not in now]
        if changed:
            what = changed[0] if key == "files" else f"{key}.{changed[0]}"
    return f"{what} changed since it was computed"


# --- scores -------------------------------------------------------------------------------


def scores_files(run: RunDir, num_models: int) -> dict[str, Path]:
    """What an attack reads: keep, labels, every model's logits and, where all have one, traces."""
    files = {"keep.npy": run.keep, "labels.npy": run.labels}
    files |= {f"models/{m:04d}/logits.npy": run.logits(m) for m in range(num_models)}
    if num_models and all(run.trace(m).is_file() for m in range(num_models)):
        files |= {f"models/{m:04d}/trace.npy": run.trace(m) for m in range(num_models)}
    return files


def scores_inputs(
    run: RunDir, config: AuditConfig, name: str, design: Design, record: dict | None
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The inputs of scores/<name>.npy as they are now, and the files they name."""
    attack = make_attack(name, config.attack_options.get(name))
    files = scores_files(run, len(load_npy(run.keep, mmap=True)))
    if attack.needs_features:
        files["pool.json"] = run.pool
    if attack.needs_tokens:  # a query's token statistics may change while its logits do not
        names = token_stats(config)
        for m in range(len(load_npy(run.keep, mmap=True))):
            files |= {f"models/{m:04d}/{n}.npy": run.token_stat(m, n) for n in names}
    if attack.needs_reference_lm:  # the base model's log-probs, made by the attack stage
        files["reference_lm/token_logprobs.npy"] = run.reference_lm
    hashes = _hashes(files, record)
    inputs = {
        "attack": name,
        "options": attack.config.model_dump(mode="json"),
        "output": config.query.output,
        "design": {"targets": list(design.targets), "references": design.references},
        "files": hashes,
    }
    return inputs, files


def scores_record_path(run: RunDir, name: str) -> Path:
    return run.scores_dir / f"{name}.json"


def skipped_record(inputs: dict[str, Any], files: Mapping[str, Path], reason: str) -> dict:
    """The record of an attack skipped on `inputs` (no scores file), saying why."""
    return {
        "inputs": inputs,
        "inputs_hash": content_hash(inputs),
        "stamps": {key: file_stamp(path) for key, path in files.items() if path.is_file()},
        "skipped": reason,
    }


def scores_skipped(run: RunDir, name: str) -> str | None:
    """Why the attack was skipped, where its record says it was (current or not); else None."""
    record = read_record(scores_record_path(run, name))
    return None if record is None else record.get("skipped")


def scores_stale(run: RunDir, config: AuditConfig, name: str, design: Design) -> str | None:
    """None when scores/<name>.npy is current, or the attack's skip is; else why not."""
    record = read_record(scores_record_path(run, name))
    skipped = record is not None and "skipped" in record
    if not skipped and not run.scores(name).is_file():
        return "there are none"
    inputs, _ = scores_inputs(run, config, name, design, record)
    reason = stale_reason(record, inputs)
    if reason is None and not skipped and not _output_current(run.scores(name), record):
        reason = "the scores file was changed since it was written"
    return reason


def _output_current(path: Path, record: dict) -> bool:
    stamp = record.get("output")
    return isinstance(stamp, dict) and stamped_hash(path, stamp) == stamp.get("sha256")


# --- metrics ------------------------------------------------------------------------------


def metrics_inputs(
    run: RunDir,
    config: AuditConfig,
    names: Sequence[str],
    design: Design,
    record: dict | None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The inputs of metrics.json for the attacks `names` as they are now, and their files."""
    skipped = {n: reason for n in names if (reason := scores_skipped(run, n)) is not None}
    scored = [n for n in names if n not in skipped]
    files = {"keep.npy": run.keep} | {f"scores/{n}.npy": run.scores(n) for n in scored}
    if run.eval_records.is_file():
        files["eval_records.npy"] = run.eval_records
    hashes = _hashes(files, record)
    inputs: dict[str, Any] = {
        "attacks": list(names),
        "skipped": skipped,
        "evaluate": config.evaluate.model_dump(mode="json"),
        "seed": config.seed,
        "targets": list(design.targets),
        "files": hashes,
    }
    if config.evaluate.ood:  # each model's queries on the sets, and how attacks score them
        inputs["ood"] = {
            "models": [
                [meta.get("query_hash"), meta.get("finished_at")]
                for meta in (run.read_meta(m) or {} for m in range(len(load_npy(run.keep))))
            ],
            "options": {n: config.attack_options.get(n) for n in scored},
        }
    return inputs, files


def metrics_stale(
    run: RunDir, config: AuditConfig, names: Sequence[str], design: Design
) -> str | None:
    """None when metrics.json (with metrics.csv, the ROC plots and the tables) is current for
    `names` and as evaluate wrote it."""
    record = read_record(run.metrics_json)
    inputs, _ = metrics_inputs(run, config, names, design, record)
    reason = stale_reason(record, inputs)
    if reason is None:
        scored = [n for n in names if n not in inputs["skipped"]]
        outputs = [run.metrics_csv, *(run.plots / f"roc_{n}.png" for n in scored)]
        missing = [p for p in outputs if not p.is_file()]
        if missing:
            reason = f"{missing[0]} is missing"
    if reason is None and record is not None:
        reason = document_changed(record, run.root)
    return reason


# --- audit.json ---------------------------------------------------------------------------


def audit_json_path(run: RunDir) -> Path:
    return run.root / "audit.json"


def audit_inputs(
    run: RunDir, config: AuditConfig, names: Sequence[str], design: Design, record: dict | None
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The inputs of audit.json for the audited attacks `names` as they are now, and their files."""
    skipped = {n: reason for n in names if (reason := scores_skipped(run, n)) is not None}
    files = {"keep.npy": run.keep}
    files |= {f"scores/{n}.npy": run.scores(n) for n in names if n not in skipped}
    files |= {f"models/{t:04d}/meta.json": run.meta(t) for t in design.targets}
    if has_secrets(config):  # the exposure of secret canaries
        files |= {
            f"models/{t:04d}/{SECRET_STAT}.npy": run.token_stat(t, SECRET_STAT)
            for t in design.targets
        }
    dp_audit = config.dp_audit.model_dump(mode="json")
    if not has_secrets(config):  # audits without secrets keep the hashes they had
        for key in ("secret_format", "secret_digits"):
            dp_audit["canaries"].pop(key)
    if not has_secrets(config) or configured_alternatives(config) is None:  # nothing sampled
        dp_audit["canaries"].pop("secret_samples")
    inputs: dict[str, Any] = {
        "attacks": list(names),
        "skipped": skipped,
        "dp_audit": dp_audit,
        "dp_delta": config.defences.dp.delta,
        "seed": config.seed,
        "targets": list(design.targets),
        "files": _hashes(files, record),
    }
    return inputs, files


def audit_stale(
    run: RunDir, config: AuditConfig, names: Sequence[str], design: Design
) -> str | None:
    """None when audit.json is current for the audited attacks `names`; else why not."""
    path = audit_json_path(run)
    if not path.is_file():
        return "there is none"
    record = read_record(path)
    inputs, _ = audit_inputs(run, config, names, design, record)
    reason = stale_reason(record, inputs)
    if reason is None and record is not None:
        reason = document_changed(record, run.root)
    return reason


# --- report -------------------------------------------------------------------------------


def report_files(run: RunDir, single_point: Sequence[Path]) -> dict[str, Path]:
    files = {"metrics.json": run.metrics_json, "run.yaml": run.run_yaml, "pool.json": run.pool}
    if audit_json_path(run).is_file():
        files["audit.json"] = audit_json_path(run)
    num_models = len(load_npy(run.keep, mmap=True))
    files |= {f"models/{m:04d}/meta.json": run.meta(m) for m in range(num_models)}
    files |= {f"single_point:{folder}": Path(folder) / "summary.json" for folder in single_point}
    return files


def report_inputs(
    run: RunDir, single_point: Sequence[Path], record: dict | None
) -> tuple[dict[str, Any], dict[str, Path]]:
    files = report_files(run, single_point)
    hashes = _hashes(files, record)
    return {"files": hashes}, files


def report_record_path(run: RunDir) -> Path:
    return run.root / "report.json"


def report_stale(run: RunDir, single_point: Sequence[Path]) -> str | None:
    """None when report.html is current for the run and these single-point folders."""
    path = run.root / "report.html"
    if not path.is_file():
        return "there is none"
    record = read_record(report_record_path(run))
    inputs, _ = report_inputs(run, single_point, record)
    reason = stale_reason(record, inputs)
    if reason is None and not _output_current(path, record):
        reason = "report.html was changed since it was written"
    return reason
