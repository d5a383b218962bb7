"""The checks `plan` runs before anything is written or trained: the attacks and their options,
the architecture against the data, the query views against the data kind, the output folder,
the models and records each chosen attack needs under the planned split, and each attack's
options against the classes, references and loss traces it will meet (`Attack.check`).

Each check raises MiakitError naming the setting and how to fix it, so that a bad audit stops in
seconds instead of after every model has trained.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from miakit.attacks import ATTACKS, make_attack
from miakit.attacks.base import Setting
from miakit.config import AuditConfig, TrainConfig
from miakit.data import Pool
from miakit.errors import MiakitError

#: `attacks: all` (or `--attacks all`) stands for every registered attack.
ALL = "all"


def resolve_attacks(names: Sequence[str]) -> list[str]:
    """The attack names with `all` expanded to every registered attack (in registry order);
    unknown names are an error listing the known ones."""
    resolved: list[str] = []
    for name in names:
        for one in ATTACKS if name == ALL else [name]:
            if one not in ATTACKS:
                raise MiakitError(
                    f"attacks: unknown attack {one!r}; known attacks: {', '.join(sorted(ATTACKS))}"
                    f" (or `all`; `miakit attacks list` describes them)"
                )
            if one not in resolved:
                resolved.append(one)
    return resolved


def check_attack_options(config: AuditConfig) -> None:
    """Every attack_options entry names a known attack and holds only valid options."""
    for name, options in config.attack_options.items():
        if name not in ATTACKS:
            raise MiakitError(
                f"attack_options.{name}: unknown attack; known attacks: "
                f"{', '.join(sorted(ATTACKS))}"
            )
        make_attack(name, options)


def check_output_dir(root: Path) -> None:
    """The run directory is a folder (or can be made one) that this process may write."""
    if root.exists() and not root.is_dir():
        raise MiakitError(f"{root} exists and is not a directory; give --out a folder")
    existing = root
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise MiakitError(f"cannot create {root}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MiakitError(f"{existing} is not writable; give --out a folder you may write")


def check_model(config: AuditConfig, pool: Pool) -> None:
    """The training device exists, the architecture exists and fits the records (and batched
    training supports it), and query views and training augmentations are asked only of images."""
    from miakit.models import build_model  # torch: imported only by the stage that plans
    from miakit.train.batched import check_batchable
    from miakit.train.trainer import resolve_device

    resolve_device(config.train.device)
    options = config.model.model_dump(exclude={"arch"})
    model = build_model(config.model.arch, pool.x.shape[1:], pool.num_classes, **options)
    if config.train.batched:
        check_batchable([model], config.train)
    if any(config.train.augment.model_dump().values()) and not pool.is_image:
        raise MiakitError(
            f"train.augment works on images, but {pool.name}'s records are feature vectors; "
            "turn train.augment off"
        )
    if config.query.augmentations > 1 and not pool.is_image:
        raise MiakitError(
            f"query.augmentations: {config.query.augmentations} views (flips and shifts) need "
            f"images, but {pool.name}'s records are feature vectors; use query.augmentations=1"
        )


def check_design(
    config: AuditConfig,
    keep: np.ndarray,
    targets: Sequence[int],
    references: Sequence[int] | None,
    eval_records: np.ndarray | None,
    attacks: Sequence[str],
) -> None:
    """Every target has members and non-members among the evaluated records (a ROC needs both),
    and every record each attack scores has the reference models that attack needs."""
    records = slice(None) if eval_records is None else eval_records
    for t in targets:
        members = keep[t, records]
        if members.all() or not members.any():
            raise MiakitError(
                f"target model {t} is trained on {int(members.sum())} of the "
                f"{members.size} evaluated records: a ROC needs members and non-members; use a "
                "larger pool (data.subsample, data.path) or another split"
            )
    needs = {side for a in attacks for side in ATTACKS[a].reference_needs}
    if not needs:
        return
    num_models = keep.shape[0]
    for t in targets:
        refs = [m for m in (references or range(num_models)) if m != t]
        inside = keep[refs].sum(axis=0)
        counts = {"in": inside, "out": len(refs) - inside, "any": np.full_like(inside, len(refs))}
        for side in sorted(needs):
            lacking = np.flatnonzero(counts[side] == 0)
            if lacking.size:
                who = [a for a in attacks if side in ATTACKS[a].reference_needs]
                kind = {"in": "an IN", "out": "an OUT", "any": "a"}[side]
                raise MiakitError(
                    f"{', '.join(who)} need{'s' * (len(who) == 1)} {kind} reference model for every record, but with "
                    f"split.num_models={num_models} ({config.split.strategy}) target {t} has none "
                    f"for {lacking.size} records (e.g. record {lacking[0]}); use more models"
                )


def trace_points(train: TrainConfig) -> int | None:
    """Rows of each model's planned loss trace: before training, after every trace_every-th epoch
    and after the last (None without traces; early stopping can leave fewer)."""
    if not train.record_trace:
        return None
    from miakit.train.traces import LossTrace  # torch: imported only by the stage that plans

    recorder = LossTrace(train.trace_every, train.epochs)
    return 1 + sum(recorder.due(epoch) for epoch in range(1, train.epochs + 1))


def check_attack_settings(
    config: AuditConfig,
    num_classes: int,
    num_models: int,
    targets: Sequence[int],
    references: Sequence[int] | None,
) -> None:
    """Each chosen attack's options fit the pool's classes, the fewest reference models of any
    target (every other model unless the split names them) and the planned loss traces; the
    attack's own `check` raises MiakitError where they do not."""
    fewest = min(len([m for m in (references or range(num_models)) if m != t]) for t in targets)
    setting = Setting(num_classes, fewest, trace_points(config.train))
    for name in config.attacks:
        make_attack(name, config.attack_options.get(name)).check(setting)
