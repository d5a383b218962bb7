"""What a model sees: the pool's records as they are, or a frozen extractor's features of them.

Training and query jobs (`miakit.model_jobs`) take a model's inputs, its fresh network and its
logits from one feature source, so neither branches on transfer learning:

- `PlainInputs`: the pool's records (images stay uint8 and are normalized inside each step);
  a new network is model.arch.
- `ExtractorFeatures` (defences.transfer): the stored outputs of the run's frozen extractor,
  which the train stage builds before any model job runs (`miakit.defences.transfer`); a new
  network is only the trained part (a head, or the last block and a head).

Both are used by torch models only; estimators (model.arch sklearn) read the pool directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import nn

from miakit.config import QueryConfig
from miakit.defences.transfer import SharedFeatures, stored_features
from miakit.models import build_model
from miakit.plan import Plan
from miakit.query import query_logits
from miakit.store import RunDir
from miakit.train.inputs import Normalization
from miakit.train.trainer import resolve_device


class FeatureSource(ABC):
    """The pool on the training device as models see it.

    `x` [N, ...] and `y` [N] are what models train on (record n of the pool is row n);
    `held_out` is the test split seen the same way ((x [N_test, ...], y [N_test]), or None
    without one); `norm` is the normalization the models' inputs need (None when none)."""

    def __init__(
        self,
        plan: Plan,
        x: np.ndarray,
        x_test: np.ndarray | None,
        norm: Normalization | None,
    ):
        pool = plan.pool
        self.device = resolve_device(plan.config.train.device)
        self.norm = norm
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(pool.y).to(self.device)
        self.held_out: tuple[torch.Tensor, torch.Tensor] | None = None
        if x_test is not None and pool.y_test is not None:
            self.held_out = (
                torch.from_numpy(np.array(x_test)).to(self.device),
                torch.from_numpy(pool.y_test).to(self.device),
            )

    @abstractmethod
    def new_model(self, plan: Plan) -> nn.Module:
        """A fresh, untrained network for these inputs, initialized from torch's global
        generator (the caller seeds it)."""

    @abstractmethod
    def query(self, model: nn.Module, query: QueryConfig) -> np.ndarray:
        """The model's logits [N, A, C] on every pool record under each of query.augmentations
        views (`miakit.query.views`), in query.batchnorm mode."""

    @abstractmethod
    def query_records(self, model: nn.Module, x: np.ndarray, query: QueryConfig) -> np.ndarray:
        """The model's logits [K, A, C] on records x [K, ...] shaped like the pool's (the
        out-of-distribution study), seen exactly as the pool's records are."""

    def describe(self, plan: Plan) -> dict[str, Any] | None:
        """The model's meta.json "transfer" entry (None for plain inputs)."""
        return None


class PlainInputs(FeatureSource):
    """The pool's records as they are; models are model.arch networks."""

    def __init__(self, plan: Plan):
        pool = plan.pool
        norm = Normalization(pool.mean, pool.std) if pool.mean is not None else None
        super().__init__(plan, pool.x, pool.x_test, norm)

    def new_model(self, plan: Plan) -> nn.Module:
        options = plan.config.model.model_dump(exclude={"arch"})
        return build_model(
            plan.config.model.arch, plan.pool.x.shape[1:], plan.pool.num_classes, **options
        )

    def query(self, model: nn.Module, query: QueryConfig) -> np.ndarray:
        return query_logits(
            model, self.x, query.augmentations, norm=self.norm, batchnorm=query.batchnorm
        )

    def query_records(self, model: nn.Module, x: np.ndarray, query: QueryConfig) -> np.ndarray:
        records = torch.from_numpy(x).to(self.device)
        return query_logits(
            model, records, query.augmentations, norm=self.norm, batchnorm=query.batchnorm
        )


class ExtractorFeatures(FeatureSource):
    """The frozen extractor's stored features (defences.transfer): models train on the features
    of the records as they are (unnormalized: `norm` is None) and are queried on each view's."""

    def __init__(self, plan: Plan, shared: SharedFeatures):
        pool = plan.pool
        self.shared = shared
        self.image_norm = Normalization(pool.mean, pool.std) if pool.mean is not None else None
        x = shared.identity(plan.config.query.augmentations)
        super().__init__(plan, x, shared.test_features, None)

    def new_model(self, plan: Plan) -> nn.Module:
        return self.shared.new_trainable(plan.config, plan.pool.num_classes)

    def query(self, model: nn.Module, query: QueryConfig) -> np.ndarray:
        return self.shared.query(model, self.device, query.batchnorm)

    def query_records(self, model: nn.Module, x: np.ndarray, query: QueryConfig) -> np.ndarray:
        records = torch.from_numpy(x).to(self.device)
        return self.shared.query_records(
            model, records, query.augmentations, self.image_norm, query.batchnorm
        )

    def describe(self, plan: Plan) -> dict[str, Any] | None:
        return self.shared.describe(plan.config)


def feature_source(plan: Plan, run: RunDir) -> FeatureSource:
    """The run's feature source. With defences.transfer, the shared features must be current
    (`miakit.defences.transfer.shared_features`, a step of the train and query stages, builds
    them); MiakitError names the fix otherwise."""
    if plan.config.defences.transfer.enabled:
        return ExtractorFeatures(plan, stored_features(plan, run))
    return PlainInputs(plan)
