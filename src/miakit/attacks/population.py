"""The population Z that RMIA and Attack-P compare each record against.

Both papers draw Z from the data distribution without knowing the target's membership; miakit's pool
plays that role. By default Z is the target's non-members, as the RMIA code does. A record x that is
itself in Z is compared with itself too, as in the RMIA code: dropping that pair would divide a
non-member's count by |Z| − 1 and a member's by |Z|, so two records with identical outputs would
score differently by their membership alone, and a score must never read the membership of the
record it scores.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from miakit.attacks.base import AttackConfig
from miakit.errors import MiakitError
from miakit.signals import Signals


class PopulationConfig(AttackConfig):
    population: Literal["target-nonmembers", "all"] | list[int] = Field(
        "target-nonmembers",
        description="Z: the target's non-members (the RMIA code's default), 'all' pool records, "
        "or a list of pool indices",
    )


def population_indices(
    signals: Signals,
    target: int,
    population: str | list[int],
    scored: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted pool indices of Z for this target; at least two records, none query-only.

    scored: bool [N], the records being scored; the named populations ("target-nonmembers",
    "all") keep only those (records outside it may lack the references Z's own values need).
    Raises MiakitError for indices outside the pool or a Z of fewer than two records."""
    n = signals.num_fit
    within = np.ones(n, dtype=bool) if scored is None else scored[:n]
    if population == "target-nonmembers":
        index = np.flatnonzero(~signals.keep[target, :n] & within)
    elif population == "all":
        index = np.flatnonzero(within)
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
