"""Membership inference attacks; importing this package registers every attack."""

from miakit.attacks import (
    confidence,
    label_only,
    learned,
    lira,
    loss,
    lt_iqr,
    qmia,
    recall,
    reference,
    rmia,
    text,
    threshold,
)
from miakit.attacks.base import ATTACKS, Attack, AttackConfig, make_attack, register

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "confidence",
    "label_only",
    "learned",
    "lira",
    "loss",
    "lt_iqr",
    "make_attack",
    "qmia",
    "recall",
    "reference",
    "register",
    "rmia",
    "text",
    "threshold",
]
