"""Keep matrices: bool [M, N], True where model m trains on pool record n."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from miakit.errors import MiakitError


def balanced_keep(num_models: int, num_records: int, rng: np.random.Generator) -> np.ndarray:
    """Every record IN for exactly M/2 models, chosen at random (LiRA's argsort construction)."""
    if num_models < 2 or num_models % 2:
        raise MiakitError(
            f"split.num_models: the balanced split needs an even number of models (>= 2), "
            f"got {num_models}"
        )
    order = rng.random((num_models, num_records)).argsort(axis=0)
    return order < num_models // 2


STRATEGIES = ("balanced", "paired", "class_balanced_target", "disjoint", "single_point")
#: the options (split.<name> config keys) each strategy takes; None means "the default".
STRATEGY_OPTIONS: dict[str, tuple[str, ...]] = {
    "balanced": (),
    "paired": (),
    "class_balanced_target": ("num_targets",),
    "disjoint": ("num_targets", "target_fraction"),
    "single_point": ("records",),
}


@dataclass(frozen=True)
class Split:
    """A keep matrix and how an evaluation reads it.

    `targets`: the models attacked in turn. `references`: the models an attacker may use against
    any target (None: every model but the target, i.e. leave-one-out). `eval_records`: bool [N],
    the records scored for the targets (None: all). `pair_records`: single_point only, int [M/2],
    the record on which models 2p and 2p+1 differ (2p+1 trains on it).
    """

    strategy: str
    keep: np.ndarray
    targets: tuple[int, ...]
    references: tuple[int, ...] | None = None
    eval_records: np.ndarray | None = None
    pair_records: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for the run directory (the arrays themselves go to .npy files)."""
        return {
            "strategy": self.strategy,
            "targets": list(self.targets),
            "references": None if self.references is None else list(self.references),
            "eval_records": None if self.eval_records is None else int(self.eval_records.sum()),
            "pair_records": None if self.pair_records is None else self.pair_records.tolist(),
        }


def make_split(
    strategy: str,
    num_models: int,
    num_records: int,
    rng: np.random.Generator,
    labels: np.ndarray | None = None,
    **options: Any,
) -> Split:
    """The keep matrix of `strategy`; options left at None take the strategy's defaults.

    Every option must belong to the strategy, so a setting that would be silently ignored is an
    error that names its config key.
    """
    if strategy not in STRATEGY_OPTIONS:
        raise MiakitError(
            f"split.strategy: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}"
        )
    given = {key: value for key, value in options.items() if value is not None}
    for key in given:
        if key not in STRATEGY_OPTIONS[strategy]:
            users = [s for s, keys in STRATEGY_OPTIONS.items() if key in keys]
            raise MiakitError(
                f"split.{key}: not used by the {strategy} strategy (only by "
                f"{', '.join(users) or 'no strategy'}); remove it"
            )
    if num_records < 2:
        raise MiakitError(f"the pool has {num_records} records; a split needs at least 2")
    if labels is not None and len(labels) != num_records:
        raise MiakitError(f"{len(labels)} labels given for a pool of {num_records} records")
    if strategy == "balanced":
        keep = balanced_keep(num_models, num_records, rng)
        return Split(strategy, keep, tuple(range(num_models)))
    if strategy == "paired":
        return Split(strategy, paired_keep(num_models, num_records, rng), tuple(range(num_models)))
    if strategy == "class_balanced_target":
        return class_balanced_target_split(num_models, rng, labels, **given)
    if strategy == "disjoint":
        return disjoint_split(num_models, num_records, rng, **given)
    return single_point_split(num_models, num_records, rng, **given)


def _require_even(num_models: int, strategy: str) -> None:
    if num_models < 2 or num_models % 2:
        raise MiakitError(
            f"split.num_models: the {strategy} split needs an even number of models (>= 2), "
            f"got {num_models}"
        )


def paired_keep(num_models: int, num_records: int, rng: np.random.Generator) -> np.ndarray:
    """Models 2p and 2p+1 train on complementary random halves: each model's partner is m ^ 1,
    and every record is IN for exactly M/2 models."""
    _require_even(num_models, "paired")
    keep = np.zeros((num_models, num_records), dtype=bool)
    for first in range(0, num_models, 2):
        keep[first, rng.permutation(num_records)[: num_records // 2]] = True
        keep[first + 1] = ~keep[first]
    return keep


def _targets_and_shadows(num_models: int, num_targets: int, strategy: str) -> int:
    if num_targets < 1 or num_targets >= num_models:
        raise MiakitError(
            f"split.num_targets: the {strategy} split needs 1 <= num_targets < num_models "
            f"({num_models}), got {num_targets}"
        )
    return num_models - num_targets


def class_balanced_target_split(
    num_models: int,
    rng: np.random.Generator,
    labels: np.ndarray | None,
    num_targets: int = 1,
) -> Split:
    """Targets (the first `num_targets` models) each train on half of every class (⌊n_c/2⌋ of
    its n_c records); the shadows on random halves, every record IN for exactly half of them."""
    if labels is None:
        raise MiakitError("the class_balanced_target split needs the pool's labels")
    shadows = _targets_and_shadows(num_models, num_targets, "class_balanced_target")
    if shadows % 2:
        raise MiakitError(
            f"split.num_models: class_balanced_target trains {num_targets} target(s) plus an even "
            f"number of shadow models, so num_models must be {num_targets} + an even number "
            f"(e.g. {num_models + 1}), got {num_models}"
        )
    keep = np.zeros((num_models, len(labels)), dtype=bool)
    for target in range(num_targets):
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            keep[target, rng.choice(members, len(members) // 2, replace=False)] = True
    keep[num_targets:] = balanced_keep(shadows, len(labels), rng)
    return Split("class_balanced_target", keep, tuple(range(num_targets)))


def disjoint_split(
    num_models: int,
    num_records: int,
    rng: np.random.Generator,
    num_targets: int = 1,
    target_fraction: float = 0.5,
) -> Split:
    """Target and shadow data disjoint, as the confidence-score experiments (Shokri et al.,
    Salem et al., Song & Mittal): a random `target_fraction` of the pool is the target's part,
    each target trains on a random half of it (its members; the other half are its non-members,
    the records scored), and each shadow trains on a random half of the rest (its members and
    non-members train the attack). Shadows are the only references."""
    shadows = _targets_and_shadows(num_models, num_targets, "disjoint")
    target_count = round(num_records * target_fraction)
    if not 0 < target_fraction < 1 or min(target_count, num_records - target_count) < 2:
        raise MiakitError(
            f"split.target_fraction: must leave at least 2 records to the target part and 2 to "
            f"the shadow part of {num_records}, got {target_fraction}"
        )
    order = rng.permutation(num_records)
    target_part, shadow_part = np.sort(order[:target_count]), np.sort(order[target_count:])
    keep = np.zeros((num_models, num_records), dtype=bool)
    for target in range(num_targets):
        keep[target, rng.choice(target_part, target_count // 2, replace=False)] = True
    for shadow in range(num_targets, num_models):
        keep[shadow, rng.choice(shadow_part, len(shadow_part) // 2, replace=False)] = True
    eval_records = np.zeros(num_records, dtype=bool)
    eval_records[target_part] = True
    references = tuple(range(num_targets, num_targets + shadows))
    return Split("disjoint", keep, tuple(range(num_targets)), references, eval_records)


def single_point_split(
    num_models: int,
    num_records: int,
    rng: np.random.Generator,
    records: list[int] | None = None,
) -> Split:
    """Pairs of models that differ by one record: model 2p trains on a random half of the pool
    without record r_p, model 2p+1 on the same records plus r_p. The r_p are `records` (cycled
    over the M/2 pairs, so one record may be tested by many pairs) or distinct random records."""
    _require_even(num_models, "single_point")
    pairs = num_models // 2
    if records is None:
        if pairs > num_records:
            raise MiakitError(
                f"split.num_models: {pairs} pairs need {pairs} distinct records, the pool has "
                f"{num_records}; give split.records or use fewer models"
            )
        chosen = rng.choice(num_records, pairs, replace=False)
    else:
        chosen = np.asarray(records, dtype=np.int64).ravel()
        if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= num_records:
            raise MiakitError(
                f"split.records: record indices must lie in [0, {num_records - 1}], got {records}"
            )
        chosen = np.resize(chosen, pairs)
    keep = np.zeros((num_models, num_records), dtype=bool)
    for pair, record in enumerate(chosen):
        others = np.delete(np.arange(num_records), record)
        keep[2 * pair, rng.choice(others, (num_records - 1) // 2, replace=False)] = True
        keep[2 * pair + 1] = keep[2 * pair]
        keep[2 * pair + 1, record] = True
    return Split("single_point", keep, tuple(range(num_models)), pair_records=chosen)
