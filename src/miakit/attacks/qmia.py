"""QMIA: membership inference by quantile regression (Bertran et al., "Scalable Membership Inference
Attacks via Quantile Regression", NeurIPS 2023).

No reference model is trained. A regressor q(x) learns, from known non-members (the population)
alone, the (1 − α) quantile of the target's score s(x, y) on non-members like x; a
record is called member when its score exceeds its predicted quantile, so on non-members the false
positive rate of "s > q" is about α for every kind of record, easy or hard. The attack's score is
the margin s(x, y) − q(x); its ROC at threshold 0 is the paper's decision rule.

- Score s: the hinge z_y − max_{j≠y} z_j of the target's outputs (the paper's), or LiRA's
  log-odds φ; averaged over the query views, like the other attacks.
- Regressor: scikit-learn's HistGradientBoostingRegressor with the pinball (quantile) loss, on the
  flattened features (q depends on x alone, as the paper's). The paper trains a network (a ResNet or ConvNeXt on
  images, an MLP on tabular data) with the pinball loss, or a Gaussian head; gradient boosting
  on the raw features is the small, CPU-friendly stand-in the deployed-case audit can afford.
- Population: the target's non-members, cross-fitted so that no record is scored by a regressor
  that saw it. The pool records are split into `folds` folds by a hash of their features,
  independently of membership, with identical records in one fold; fold k is
  scored by the regressor fitted on the non-members of the other folds.
  Every record gets a score, and a score never reads its own record's membership. Query-only
  records are scored by fold 0's regressor and fit nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from miakit.attacks.base import Attack, AttackConfig, register
from miakit.errors import MiakitError
from miakit.signals import Signals


class QmiaConfig(AttackConfig):
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="α: the regressor predicts the (1 − α) quantile of non-members' scores, so "
        "'score above it' has an FPR of about α (the paper's low-FPR regime: 1%)",
    )
    signal: Literal["hinge", "log_odds"] = Field(
        default="hinge",
        description="the target's score whose quantile is regressed: hinge z_y − max_{j≠y} z_j "
        "(the paper's) or the log-odds φ",
    )
    folds: int = Field(
        default=2,
        ge=2,
        description="cross-fitting folds: each fold is scored by a regressor fitted on the "
        "non-members of the other folds",
    )
    max_iter: int = Field(default=100, ge=1, description="boosting iterations of the regressor")
    learning_rate: float = Field(default=0.1, gt=0, description="the regressor's learning rate")
    max_leaf_nodes: int = Field(
        default=8,
        ge=2,
        description="leaves per tree of the regressor (fewer than scikit-learn's 31: deep trees "
        "overfit the tail quantile, and the FPR on unseen non-members exceeds α)",
    )
    seed: int = Field(default=0, ge=0, description="salt of the records' split into folds")


def regressor_inputs(signals: Signals) -> np.ndarray:
    """The regressor's inputs [N, D]: each record's flattened features, float32."""
    return np.asarray(signals.features, dtype=np.float32).reshape(len(signals.features), -1)


def quantile_regressor(config: QmiaConfig):
    """An unfitted HistGradientBoostingRegressor with the pinball loss at 1 − α (imported here:
    commands that score nothing start without scikit-learn's models)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        loss="quantile",
        quantile=1.0 - config.alpha,
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        max_leaf_nodes=config.max_leaf_nodes,
        early_stopping=False,
        random_state=0,
    )


@register
class Qmia(Attack):
    """QMIA (Bertran et al. 2023): score margin over a regressed non-member quantile; no references.

    The regressor predicts, from the record's features, the (1 − α) quantile of the target's
    score on non-members (see the module docstring)."""

    name = "qmia"
    Config = QmiaConfig
    needs_features = True

    def fold_of(self, signals: Signals) -> np.ndarray:
        """Each pool record's fold, int [num_fit], drawn from a hash of the record's features and
        `seed` alone: not from membership, and the same for identical records, so an exact
        duplicate of a scored record is never in its regressor's population."""
        features = np.ascontiguousarray(signals.features[: signals.num_fit])
        salt = str(self.config.seed).encode()
        digests = [hashlib.sha256(salt + row.tobytes()).digest() for row in features]
        return np.array([int.from_bytes(d[:8], "little") % self.config.folds for d in digests])

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        """Margins [N] of the target's score over its predicted quantile.

        Raises MiakitError without features, or where a fold's population has fewer than 2
        non-members. With fewer than 1/α non-members per fold the regressor can only learn
        their largest scores, so FPRs below 1/(non-members) are not what α asks for."""
        reason = self.unavailable(signals)
        if reason is not None:
            raise MiakitError(reason)
        config = self.config
        score = signals.signal(config.signal, [target])[0].mean(axis=-1)  # [N]
        inputs = regressor_inputs(signals)
        n = signals.num_fit
        folds = self.fold_of(signals)
        non_member = ~signals.keep[target, :n]
        margin = np.empty(signals.num_records)
        for k in range(config.folds):
            fit = np.flatnonzero(non_member & (folds != k))
            if fit.size < 2:
                raise MiakitError(
                    f"qmia: target model {target}'s population for fold {k} has {fit.size} "
                    "non-members; it needs at least 2 (use fewer folds or a larger pool)"
                )
            regressor = quantile_regressor(config).fit(inputs[fit], score[fit])
            scored = np.flatnonzero(folds == k)
            if k == 0:
                scored = np.r_[scored, np.arange(n, signals.num_records)]
            margin[scored] = score[scored] - regressor.predict(inputs[scored])
        return margin
