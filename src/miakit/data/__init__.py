"""Data sets, their loaders and the split strategies that make keep matrices."""

from miakit.data.pool import Pool
from miakit.data.registry import DATASETS, USER_DATA, load_pool, resolve_data_dir
from miakit.data.splits import STRATEGIES, Split, balanced_keep, make_split

__all__ = [
    "DATASETS",
    "STRATEGIES",
    "USER_DATA",
    "Pool",
    "Split",
    "balanced_keep",
    "load_pool",
    "make_split",
    "resolve_data_dir",
]
