"""Threshold attacks as the confidence-score study runs them (Hintersdorf et al., IJCAI 2022).

One shadow model (a reference model; its IN records are members, its OUT records non-members) fixes a
threshold, which is then applied to the target; the score is the decision, 1.0 (member) or 0.0.

- `threshold-confidence`: on the max softmax probability, the threshold with the largest TPR − FPR
  on the shadow model's ROC (first best from the top); member iff score ≥ threshold.
- `threshold-entropy`: on the prediction entropy, the best accuracy over a grid of 10,000 evenly
  spaced values between the shadow's smallest and largest entropy (first best); member iff
  entropy < threshold.

`threshold_report` gives the study's figures: precision, recall, FPR and MMPS (mean max prediction
score) within the TP, FP, TN and FN groups.

Differences from the reference code (ml-research/To-Trust-or-Not-To-Trust-Prediction-Scores…):
- Its confidence attack applies `score > threshold` although the threshold came from the ROC's
  `score ≥ threshold` points, so records tied at the threshold (e.g. probabilities saturated at 1)
  flip; `comparison: ">"` reproduces it.
- MMPS of an empty group is NaN here, 0 in the code. Signals are averaged over query augmentations.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from miakit.attacks.base import Attack, AttackConfig, Setting, observed_setting, register
from miakit.errors import MiakitError
from miakit.signals import Signals


class ThresholdConfig(AttackConfig):
    shadow: int = Field(
        0, ge=0, description="which reference model is the shadow model (a position in the list)"
    )


class ConfidenceThresholdConfig(ThresholdConfig):
    comparison: Literal[">=", ">"] = Field(
        ">=", description="member iff max probability ≥ threshold, or > (the reference code)"
    )


class EntropyThresholdConfig(ThresholdConfig):
    grid: int = Field(10_000, ge=2, description="evenly spaced entropy thresholds tried")


def max_tpr_minus_fpr_threshold(scores: np.ndarray, members: np.ndarray) -> float:
    """The score threshold t maximising TPR − FPR of `score ≥ t` (the first best from the top)."""
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    tp = np.cumsum(members[order])
    fp = np.cumsum(~members[order])
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]
    gain = tp[last_of_tie] / max(members.sum(), 1) - fp[last_of_tie] / max((~members).sum(), 1)
    # the ROC starts at (0, 0) above every score: it wins when no threshold gains anything
    candidates = np.r_[np.inf, ordered[last_of_tie]]
    return float(candidates[np.argmax(np.r_[0.0, gain])])


def max_accuracy_entropy_threshold(entropy: np.ndarray, members: np.ndarray, grid: int) -> float:
    """The θ on an even grid maximising #(non-members with entropy ≥ θ) + #(members < θ)."""
    thetas = np.linspace(entropy.min(), entropy.max(), grid)
    member_below = np.searchsorted(np.sort(entropy[members]), thetas, side="left")
    outsiders = np.sort(entropy[~members])
    outsider_at_or_above = outsiders.size - np.searchsorted(outsiders, thetas, side="left")
    return float(thetas[np.argmax(member_below + outsider_at_or_above)])


class ThresholdAttack(Attack):
    """Calibrate on the shadow model, decide on the target."""

    kind: ClassVar[Literal["max_prob", "entropy"]]
    reference_needs = ("any",)

    def check(self, setting: Setting) -> None:
        """MiakitError where `shadow` picks a reference model beyond the references."""
        if self.config.shadow >= setting.num_references:
            raise MiakitError(
                f"attack_options.{self.name}.shadow: {self.config.shadow} picks a reference model "
                f"(counting from 0), but there are only {setting.num_references}; use a smaller "
                "shadow index or more models"
            )

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        """Raises MiakitError where `shadow` is beyond the references (`check`) or the shadow
        model lacks IN or OUT pool records."""
        self.check(observed_setting(signals, target, reference))
        shadow = reference[self.config.shadow]
        fit = slice(0, signals.num_fit)
        members = signals.keep[shadow, fit]
        if members.all() or not members.any():
            raise MiakitError(
                f"shadow model {shadow} must have both IN and OUT pool records to set a threshold"
            )
        values = signals.signal(self.kind, [shadow, target]).mean(axis=-1)
        return self._decide(values[0, fit], members, values[1]).astype(np.float64)

    @abstractmethod
    def _decide(self, shadow: np.ndarray, members: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Member decisions [N] for the target from the shadow's values and membership."""


@register
class ConfidenceThreshold(ThresholdAttack):
    name = "threshold-confidence"
    Config = ConfidenceThresholdConfig
    kind = "max_prob"

    def _decide(self, shadow: np.ndarray, members: np.ndarray, target: np.ndarray) -> np.ndarray:
        threshold = max_tpr_minus_fpr_threshold(shadow, members)
        return target >= threshold if self.config.comparison == ">=" else target > threshold


@register
class EntropyThreshold(ThresholdAttack):
    name = "threshold-entropy"
    Config = EntropyThresholdConfig
    kind = "entropy"

    def _decide(self, shadow: np.ndarray, members: np.ndarray, target: np.ndarray) -> np.ndarray:
        return target < max_accuracy_entropy_threshold(shadow, members, self.config.grid)


@dataclass(frozen=True)
class ThresholdReport:
    precision: float
    recall: float
    fpr: float
    #: Mean max prediction score in each group: keys "tp", "fp", "tn", "fn".
    mmps: dict[str, float]


def threshold_report(
    predicted: np.ndarray, members: np.ndarray, max_score: np.ndarray
) -> ThresholdReport:
    """The study's figures for binary decisions; precision is 0 when nothing is called a member."""
    predicted, members = np.asarray(predicted, dtype=bool), np.asarray(members, dtype=bool)
    groups = {
        "tp": predicted & members,
        "fp": predicted & ~members,
        "tn": ~predicted & ~members,
        "fn": ~predicted & members,
    }
    tp, fp = int(groups["tp"].sum()), int(groups["fp"].sum())
    return ThresholdReport(
        precision=tp / (tp + fp) if tp else 0.0,
        recall=tp / max(int(members.sum()), 1),
        fpr=fp / max(int((~members).sum()), 1),
        mmps={
            k: float(max_score[g].mean()) if g.any() else float("nan") for k, g in groups.items()
        },
    )
