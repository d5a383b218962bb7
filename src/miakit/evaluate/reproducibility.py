"""Do other runs (seeds, training variants) expose the same records? A vulnerable set found once may
be chance; its overlap over every combination of runs, and how stable the record ranking is, say how
far a record-level verdict can be trusted."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from miakit.errors import MiakitError


def set_agreement(sets: np.ndarray) -> pd.DataFrame:
    """For vulnerable sets as bool masks [R, N] (one row per run), per combination size r = 2..R:
    the number of combinations and the mean over them of |∩|, |∪| and Jaccard |∩| / |∪| (combinations
    whose union is empty have no Jaccard and are left out of its mean)."""
    sets = np.asarray(sets, dtype=bool)
    if sets.ndim != 2 or len(sets) < 2:
        raise MiakitError(f"set agreement needs bool masks [R >= 2, N], got shape {sets.shape}")
    rows = []
    for r in range(2, len(sets) + 1):
        sizes = np.array(
            [
                (
                    np.logical_and.reduce(sets[list(c)]).sum(),
                    np.logical_or.reduce(sets[list(c)]).sum(),
                )
                for c in combinations(range(len(sets)), r)
            ]
        )
        nonempty = sizes[:, 1] > 0
        rows.append(
            {
                "runs": r,
                "combinations": len(sizes),
                "intersection": float(sizes[:, 0].mean()),
                "union": float(sizes[:, 1].mean()),
                "jaccard": float((sizes[nonempty, 0] / sizes[nonempty, 1]).mean())
                if nonempty.any()
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def rank_stability(values: np.ndarray) -> pd.DataFrame:
    """Spearman correlation of per-record risk values [R, N] between every two runs, as a matrix
    [R, R]; records without a value (NaN) in either run of a pair are left out of that pair."""
    values = np.asarray(values, dtype=np.float64)
    runs = len(values)
    if values.ndim != 2 or runs < 2:
        raise MiakitError(f"rank stability needs values [R >= 2, N], got shape {values.shape}")
    matrix = np.eye(runs)
    for a, b in combinations(range(runs), 2):
        both = ~np.isnan(values[a]) & ~np.isnan(values[b])
        matrix[a, b] = matrix[b, a] = spearmanr(values[a, both], values[b, both]).statistic
    return pd.DataFrame(matrix)


def mean_off_diagonal(matrix: pd.DataFrame) -> float:
    """The mean pairwise correlation of a rank_stability matrix."""
    m = matrix.to_numpy()
    return float(m[~np.eye(len(m), dtype=bool)].mean())
