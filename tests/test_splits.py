"""Each split strategy's invariants, checked on the keep matrix it returns."""

from __future__ import annotations

import numpy as np
import pytest

from miakit.data.splits import STRATEGIES, balanced_keep, make_split
from miakit.errors import MiakitError
from miakit.seeding import rng


def gen(index: int = 0) -> np.random.Generator:
    return rng(7, "keep", index)


LABELS = np.repeat(np.arange(5), [20, 21, 7, 2, 50])  # imbalanced, two odd class sizes


def test_balanced_every_record_in_for_exactly_half_the_models():
    keep = make_split("balanced", 16, 101, gen()).keep
    assert keep.dtype == bool and keep.shape == (16, 101)
    assert (keep.sum(axis=0) == 8).all()
    assert 40 < keep.sum(axis=1).mean() < 61  # rows are random halves, not fixed blocks


def test_balanced_is_the_existing_function():
    split = make_split("balanced", 8, 50, gen())
    assert np.array_equal(split.keep, balanced_keep(8, 50, gen()))
    assert split.targets == tuple(range(8)) and split.references is None


def test_paired_models_are_complements():
    split = make_split("paired", 10, 51, gen())
    keep = split.keep
    for first in range(0, 10, 2):
        assert (keep[first] ^ keep[first + 1]).all()
        assert keep[first].sum() == 25
    assert (keep.sum(axis=0) == 5).all()
    assert len({row.tobytes() for row in keep[::2]}) == 5  # pairs draw different halves


def test_class_balanced_target_takes_half_of_every_class():
    split = make_split("class_balanced_target", 9, len(LABELS), gen(), LABELS)
    keep = split.keep
    assert split.targets == (0,) and split.references is None
    for label, size in enumerate([20, 21, 7, 2, 50]):
        assert keep[0, label == LABELS].sum() == size // 2
    assert (keep[1:].sum(axis=0) == 4).all()  # shadows: every record IN for half of them


def test_class_balanced_target_with_several_targets():
    keep = make_split("class_balanced_target", 5, len(LABELS), gen(), LABELS, num_targets=3).keep
    for target in range(3):
        assert keep[target, LABELS == 1].sum() == 10
    assert not np.array_equal(keep[0], keep[1])
    assert (keep[3:].sum(axis=0) == 1).all()


def test_class_balanced_target_needs_an_even_number_of_shadows():
    with pytest.raises(MiakitError, match=r"num_models must be 1 \+ an even number \(e\.g\. 9\)"):
        make_split("class_balanced_target", 8, len(LABELS), gen(), LABELS)
    with pytest.raises(MiakitError, match="needs the pool's labels"):
        make_split("class_balanced_target", 9, len(LABELS), gen())


def test_disjoint_target_and_shadow_data_never_meet():
    split = make_split("disjoint", 5, 200, gen(), num_targets=1, target_fraction=0.3)
    keep, part = split.keep, split.eval_records
    assert split.targets == (0,) and split.references == (1, 2, 3, 4)
    assert part.sum() == 60
    assert keep[0, part].sum() == 30 and not keep[0, ~part].any()
    assert not keep[1:, part].any()
    assert (keep[1:, ~part].sum(axis=1) == 70).all()
    assert not (keep[0] & keep[1:]).any()
    assert len({row.tobytes() for row in keep[1:]}) == 4


def test_disjoint_members_and_non_members_of_the_target_are_equal_halves():
    split = make_split("disjoint", 2, 101, gen())
    members = split.keep[0] & split.eval_records
    non_members = ~split.keep[0] & split.eval_records
    assert members.sum() == 25 and non_members.sum() == 25 and split.eval_records.sum() == 50


def test_disjoint_rejects_a_degenerate_fraction():
    with pytest.raises(MiakitError, match=r"split\.target_fraction"):
        make_split("disjoint", 3, 100, gen(), target_fraction=0.99)


def test_single_point_pairs_differ_by_exactly_their_record():
    split = make_split("single_point", 12, 41, gen())
    keep, records = split.keep, split.pair_records
    assert len(set(records.tolist())) == 6
    for pair, record in enumerate(records):
        without, with_record = keep[2 * pair], keep[2 * pair + 1]
        assert np.flatnonzero(without ^ with_record).tolist() == [record]
        assert with_record[record] and not without[record]
        assert without.sum() == 20


def test_single_point_cycles_through_given_records():
    split = make_split("single_point", 8, 30, gen(), records=[3, 17])
    assert split.pair_records.tolist() == [3, 17, 3, 17]
    bases = {split.keep[2 * p].tobytes() for p in range(4)}
    assert len(bases) == 4  # every pair draws its own base


def test_single_point_rejects_records_outside_the_pool():
    with pytest.raises(MiakitError, match=r"split\.records"):
        make_split("single_point", 4, 30, gen(), records=[30])


@pytest.mark.parametrize("strategy", ["balanced", "paired", "single_point"])
def test_odd_model_counts_are_refused_where_models_come_in_halves_or_pairs(strategy):
    with pytest.raises(MiakitError, match="even number of models"):
        make_split(strategy, 7, 30, gen())


def test_options_of_another_strategy_are_errors_naming_the_key():
    with pytest.raises(MiakitError, match=r"split\.target_fraction: not used by the paired"):
        make_split("paired", 4, 30, gen(), target_fraction=0.5)
    make_split("paired", 4, 30, gen(), target_fraction=None, records=None)  # None = unset


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(MiakitError, match="known: balanced, paired"):
        make_split("random", 4, 30, gen())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_split_other_seed_other_split(strategy):
    n = len(LABELS)
    first = make_split(strategy, 9 if strategy == "class_balanced_target" else 8, n, gen(0), LABELS)
    again = make_split(strategy, 9 if strategy == "class_balanced_target" else 8, n, gen(0), LABELS)
    other = make_split(strategy, 9 if strategy == "class_balanced_target" else 8, n, gen(1), LABELS)
    assert np.array_equal(first.keep, again.keep) and not np.array_equal(first.keep, other.keep)
    assert first.describe()["strategy"] == strategy
