"""Agreement of vulnerable sets over combinations of runs, and rank stability."""

from itertools import combinations

import numpy as np
import pytest
from scipy.stats import pearsonr

from miakit.errors import MiakitError
from miakit.evaluate.reproducibility import mean_off_diagonal, rank_stability, set_agreement


def masks(sets: list[set[int]], n: int) -> np.ndarray:
    return np.array([[i in s for i in range(n)] for s in sets])


def test_set_agreement_by_hand():
    table = set_agreement(masks([{0, 1, 2}, {1, 2, 3}, {2, 4}], 6))
    pairs, triple = table.iloc[0], table.iloc[1]
    # AB: 2 of 4 (0.5); AC: 1 of 4; BC: 1 of 4
    assert (pairs["runs"], pairs["combinations"]) == (2, 3)
    assert pairs["intersection"] == pytest.approx(4 / 3)
    assert pairs["union"] == 4
    assert pairs["jaccard"] == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    # all three: {2} of {0, 1, 2, 3, 4}
    assert (triple["combinations"], triple["intersection"], triple["union"]) == (1, 1, 5)
    assert triple["jaccard"] == pytest.approx(0.2)


def test_set_agreement_against_python_sets():
    rng = np.random.default_rng(0)
    sets = [set(np.flatnonzero(rng.random(30) < 0.3)) for _ in range(4)]
    table = set_agreement(masks(sets, 30)).set_index("runs")
    for r in (2, 3, 4):
        combos = list(combinations(sets, r))
        inter = [len(set.intersection(*c)) for c in combos]
        union = [len(set.union(*c)) for c in combos]
        assert table.loc[r, "combinations"] == len(combos)
        assert table.loc[r, "intersection"] == pytest.approx(np.mean(inter))
        assert table.loc[r, "jaccard"] == pytest.approx(np.mean(np.divide(inter, union)))


def test_empty_unions_have_no_jaccard():
    table = set_agreement(masks([set(), set(), {1}], 3))
    # pairs: (∅, ∅) has no Jaccard; (∅, {1}) twice has 0
    assert table.iloc[0]["jaccard"] == 0.0
    assert np.isnan(set_agreement(masks([set(), set()], 3)).iloc[0]["jaccard"])
    with pytest.raises(MiakitError, match="R >= 2"):
        set_agreement(masks([{1}], 3))


def test_rank_stability_is_pearson_of_ranks_and_skips_missing():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, 40))
    values[1] += values[0]
    values[2, 5] = np.nan
    matrix = rank_stability(values)

    def ranks(v):
        return np.argsort(np.argsort(v))

    keep = np.arange(40) != 5
    expected_02 = pearsonr(ranks(values[0, keep]), ranks(values[2, keep])).statistic
    assert matrix.iat[0, 1] == pytest.approx(pearsonr(ranks(values[0]), ranks(values[1])).statistic)
    assert matrix.iat[2, 0] == pytest.approx(expected_02)
    assert mean_off_diagonal(matrix) == pytest.approx(
        (matrix.iat[0, 1] + matrix.iat[0, 2] + matrix.iat[1, 2]) / 3
    )
