"""The population Z that RMIA and Attack-P compare each record against.

Both papers draw Z from the data distribution without knowing the target's membership; miakit's pool
plays that role. By default Z is the target's non-members, as the RMIA code does; a record x that is
itself in Z is not compared with itself unless `include_self_pair` asks for the code's behaviour.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from miakit.attacks.base import AttackConfig
from miakit.errors import MiakitError
from miakit.signals import Signals


class PopulationConfig(AttackConfig):
    #: "target-nonmembers" (the RMIA code's default), "all" pool records, or a list of pool indices.
    population: Literal["target-nonmembers", "all"] | list[int] = "target-nonmembers"
    #: The reference code compares a population record with itself (a pair that never counts for
    #: RMIA with γ ≥ 1 and never for Attack-P), which lowers every non-member's score slightly.
    include_self_pair: bool = False


def population_indices(signals: Signals, target: int, population: str | list[int]) -> np.ndarray:
    """Sorted pool indices of Z for this target; at least two records, none query-only."""
    n = signals.num_fit
    if population == "target-nonmembers":
        index = np.flatnonzero(~signals.keep[target, :n])
    elif population == "all":
        index = np.arange(n)
    else:
        index = np.unique(np.asarray(population, dtype=np.int64))
        if index.size and (index[0] < 0 or index[-1] >= n):
            raise MiakitError(
                f"population indices must lie in [0, {n}) (pool records), "
                f"got range [{index[0]}, {index[-1]}]; fix attack_options population"
            )
    if index.size < 2:
        raise MiakitError(
            f"the population for target model {target} has {index.size} records; it needs at "
            "least 2 (the target's non-members by default, or a longer population list)"
        )
    return index


def self_pair_mask(num_records: int, population: np.ndarray, include_self_pair: bool) -> np.ndarray:
    """True for records whose pair with themselves is dropped from Z (bool [N])."""
    mask = np.zeros(num_records, dtype=bool)
    if not include_self_pair:
        mask[population] = True
    return mask
