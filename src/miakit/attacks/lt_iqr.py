"""LT-IQR: record-level risk from the loss traces recorded while training the target.

Pollock et al. ("Free record-level privacy risk evaluation through artifact-based methods") rank
training records by the interquartile range of their per-epoch loss: records the model learns late
and abruptly, the ones LiRA finds most exposed, have wide traces. It costs nothing beyond training
and needs no reference model. Quantiles are linearly interpolated (numpy's default).

The paper's ablations are options (`statistic`), each oriented so that higher = more member-like:
`mean` (−mean loss), `slope` (−least-squares slope per epoch), `mid-end` (loss at window point
L // 2, the middle as the loss-traces code takes it, minus at the last), `1-end/mid` (relative
drop; 0 where the middle loss is 0), `l1`…`l4` and `linf` (−the norm of the trace).
`epochs: [start, stop]` keeps recorded points start..stop−1 (point 0 is before training).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from miakit.attacks.base import Attack, AttackConfig, Setting, observed_setting, register
from miakit.errors import MiakitError
from miakit.signals import Signals

_NORMS = {"l1": 1, "l2": 2, "l3": 3, "l4": 4, "linf": np.inf}


class LtIqrConfig(AttackConfig):
    statistic: Literal[
        "iqr", "mean", "slope", "mid-end", "1-end/mid", "l1", "l2", "l3", "l4", "linf"
    ] = Field(
        "iqr",
        description="statistic of the loss trace: the paper's IQR or an ablation (see the module)",
    )
    epochs: tuple[int, int] | None = Field(
        None,
        description="[start, stop]: keep recorded points start..stop−1 (0: before "
        "training); null: all",
    )

    @model_validator(mode="after")
    def _window(self) -> LtIqrConfig:
        if self.epochs is not None and not 0 <= self.epochs[0] < self.epochs[1]:
            raise ValueError("epochs must be [start, stop] with 0 ≤ start < stop")
        return self


def trace_statistic(trace: np.ndarray, statistic: str) -> np.ndarray:
    """The statistic of loss traces [E, N] per record [N], higher = more member-like."""
    if statistic == "iqr":
        q1, q3 = np.percentile(trace, [25, 75], axis=0)
        return q3 - q1
    if statistic == "mean":
        return -trace.mean(axis=0)
    if statistic == "slope":
        t = np.arange(trace.shape[0]) - (trace.shape[0] - 1) / 2
        return -(t @ trace) / (t @ t)
    mid, end = trace[trace.shape[0] // 2], trace[-1]  # the loss-traces code's middle point
    if statistic == "mid-end":
        return mid - end
    if statistic == "1-end/mid":
        ratio = np.divide(end, mid, out=np.ones_like(end), where=mid != 0)
        return 1 - ratio
    return -np.linalg.norm(trace, ord=_NORMS[statistic], axis=0)


@register
class LtIqr(Attack):
    """Scores each pool record by a statistic of its loss trace under the target model."""

    name = "lt-iqr"
    Config = LtIqrConfig
    output_needs = "nothing"  # the training's loss traces, whatever the API returns

    def check(self, setting: Setting) -> None:
        """MiakitError without loss traces, where `epochs` reaches past the recorded points, or
        where the window holds fewer points than the statistic needs."""
        points = setting.trace_points
        if points is None:
            raise MiakitError(
                "lt-iqr needs loss traces (models/<m>/trace.npy, per-record loss after every "
                "epoch, [E+1, N]); set train.record_trace=true or add the files"
            )
        start, stop = self.config.epochs or (0, points)
        if stop > points:
            raise MiakitError(
                f"attack_options.lt-iqr.epochs: [{start}, {stop}] reaches past the {points} "
                f"recorded points of the loss trace (before training and after each recorded "
                f"epoch); use stop ≤ {points} or train longer"
            )
        minimum = 2 if self.config.statistic in ("iqr", "slope") else 1
        if stop - start < minimum:
            raise MiakitError(
                f"attack_options.lt-iqr: {self.config.statistic} needs at least {minimum} recorded "
                f"epochs, the window has {stop - start}; widen epochs"
            )

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        """Raises MiakitError where the traces do not fit the options (`check`; early stopping
        shortens a trace) or hold NaN or infinity."""
        self.check(observed_setting(signals, target, reference))
        trace = np.asarray(signals.traces[target], dtype=np.float64)
        start, stop = self.config.epochs or (0, trace.shape[0])
        window = trace[start:stop]
        if not np.isfinite(window).all():
            record = int(np.flatnonzero(~np.isfinite(window).all(axis=0))[0])
            raise MiakitError(
                f"the loss trace of model {target} holds NaN or infinity at record {record}; "
                "retrain that model"
            )
        return trace_statistic(window, self.config.statistic)
