"""Data sets, their loaders and the split strategies that make keep matrices."""

from miakit.data.pool import Pool
from miakit.data.registry import DATASETS, load_pool, resolve_data_dir
from miakit.data.splits import balanced_keep

__all__ = ["DATASETS", "Pool", "balanced_keep", "load_pool", "resolve_data_dir"]
